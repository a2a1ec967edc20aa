"""Figure of a partition: per-client label distribution as stacked bars (in the style of flwr-datasets)."""

from __future__ import annotations

import os
from pathlib import Path

from fedtrain.io import save_figure
from fedtrain.partition import Partition

__all__ = ["plot_label_distribution"]


def plot_label_distribution(
    partition: Partition, path: str | os.PathLike[str], *, class_names: list[str] | None = None
) -> list[Path]:
    """Stacked bars: one bar per client, one colour per class, height = number of samples.

    Returns the files written (PNG and PDF when ``path`` has no suffix).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hist = partition.label_histograms.numpy()
    clients = np.arange(partition.num_clients)
    cmap = plt.get_cmap("tab10" if partition.num_classes <= 10 else "tab20")
    width = max(6.0, min(16.0, 0.12 * partition.num_clients + 3))
    fig, ax = plt.subplots(figsize=(width, 3.6))
    bottom = np.zeros(partition.num_clients)
    for c in range(partition.num_classes):
        name = class_names[c] if class_names else str(c)
        ax.bar(clients, hist[:, c], bottom=bottom, width=0.9, color=cmap(c % cmap.N), label=name, linewidth=0)
        bottom += hist[:, c]
    alpha = "" if partition.alpha is None else f", $\\alpha$ = {partition.alpha:g}"
    summary = partition.summary()["classes_per_client"]
    ax.set_title(
        f"{partition.dataset or 'dataset'}: {partition.scheme}{alpha}, {partition.num_clients} clients, "
        f"classes/client mean {summary['mean']:.2f} (min {summary['min']}, max {summary['max']})",
        fontsize=10,
    )
    ax.set_xlabel("client")
    ax.set_ylabel("samples")
    ax.set_xlim(-0.5, partition.num_clients - 0.5)
    if partition.num_classes <= 20:
        ax.legend(title="class", fontsize=8, title_fontsize=8, ncol=1, bbox_to_anchor=(1.01, 1), loc="upper left")
    written = save_figure(fig, path)
    plt.close(fig)
    return written
