"""Figure of a federated partition: per-client label distribution as stacked bars (in the style of flwr-datasets)."""

from __future__ import annotations

import os
from pathlib import Path

from fedtrain.partition import Partition
from landscape.plots.figure import new_figure, save_figure

__all__ = ["plot_label_distribution"]


def plot_label_distribution(
    partition: Partition, path: str | os.PathLike[str], *, class_names: list[str] | None = None
) -> list[Path]:
    """Stacked bars: one bar per client, one colour per class, height = number of samples.

    Args:
        partition: the split to draw.
        path: output path, with a ``.png``/``.pdf`` suffix or without (then PNG and PDF).
        class_names: legend names of the classes (default: their indices).

    Returns:
        The files written.
    """
    import matplotlib
    import numpy as np

    hist = partition.label_histograms.numpy()
    clients = np.arange(partition.num_clients)
    cmap = matplotlib.colormaps["tab10" if partition.num_classes <= 10 else "tab20"]
    width = max(6.0, min(16.0, 0.12 * partition.num_clients + 3))
    fig = new_figure(1, 1, width, 3.6, layout=None)
    ax = fig.subplots()
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
    return save_figure(fig, path)
