"""Figures of ``landscape clients``: per-client lambda_max strips, local versus global sharpness, drift versus sharpness, the drift plane.

Each figure takes ``name -> result`` (the ``fedlandscape.clients`` JSON of one checkpoint) and draws one
colour per result, labelled by its algorithm and split (``FedSAM, α = 0``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedtrain.config import TrainConfig
from landscape.plots.figure import new_figure, save_figure
from landscape.plots.paper import algorithm_label, split_label
from landscape.surface.record import Surface

__all__ = ["result_name", "result_label", "plot_lambda_strips", "plot_local_global", "plot_drift_sharpness",
           "plot_drift_plane", "write_client_figures"]

Results = Mapping[str, Mapping[str, Any]]


def _config(result: Mapping[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(result["checkpoint"]["run_config"])


def result_label(result: Mapping[str, Any]) -> str:
    """``FedSAM, α = 0``: the algorithm (with ``+SWA``) and the split of the checkpoint's run."""
    config = _config(result)
    return f"{algorithm_label(config)}, {split_label(config)}"


def result_name(result: Mapping[str, Any], taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A file-name-safe name: ``fedsam-alpha0``, ``fedasam-swa-alpha100``, ``fedavg-iid``; ``-2``, ``-3``... when taken."""
    config = _config(result)
    split = "iid" if config.partition == "iid" else f"{'' if config.partition == 'dirichlet' else config.partition + '-'}alpha{config.alpha:g}"
    base = f"{config.algorithm}{'-swa' if config.swa else ''}-{split}"
    name, index = base, 2
    while name in taken:
        name, index = f"{base}-{index}", index + 1
    return name


def _lambdas(result: Mapping[str, Any], where: str) -> np.ndarray:
    return np.array([c[where]["eigenvalues"][0] for c in result["clients"] if where in c], dtype=float)


def plot_lambda_strips(results: Results, path: str | os.PathLike[str]) -> list[Path]:
    """lambda_max of every analysed client's loss, one strip per result: at the global model (left), at the client's own model (right).

    The pooled Hessian's lambda_max (global model, union of the clients' samples) is the black bar on
    both panels; the grey bar is the clients' sample-weighted mean (on the left it is at least the pooled
    value: lambda_max is convex).
    """
    from matplotlib.lines import Line2D

    names = list(results)
    fig = new_figure(2, 1, max(3.0, 0.7 * len(names) + 1.2), 3.0)
    axes = fig.subplots(1, 2, sharey=True)
    jitter = np.random.default_rng(0)  # fixed: the figure is the same on every run
    for ax, where, title in ((axes[0], "global", "at the global model w"), (axes[1], "local", "at the client's own model w_k")):
        for i, name in enumerate(names):
            values = _lambdas(results[name], where)
            if values.size:
                ax.scatter(i + jitter.uniform(-0.18, 0.18, values.size), values, s=9, color=f"C{i}", alpha=0.75, linewidths=0)
                gap = results[name].get("gap" if where == "global" else "local_gap", {})
                if gap:
                    ax.hlines(gap["weighted_mean_local"], i - 0.32, i + 0.32, color="0.45", linewidth=1.5)
            ax.hlines(results[name]["gap"]["pooled"], i - 0.32, i + 0.32, color="black", linewidth=1.5)
        ax.set_xticks(range(len(names)), [result_label(results[n]) for n in names], rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_title(title)
    axes[0].set_ylabel("λ_max of the client's loss Hessian")
    axes[1].legend(handles=[Line2D([], [], color="black", linewidth=1.5, label="pooled, at w"),
                            Line2D([], [], color="0.45", linewidth=1.5, label="clients' mean")], frameon=False, fontsize=7)
    return save_figure(fig, path)


def plot_local_global(results: Results, path: str | os.PathLike[str]) -> list[Path]:
    """Per client: lambda_max at the global model (x) against lambda_max at its own model (y); dashed: each result's pooled lambda_max."""
    fig = new_figure(1, 1, 3.8, 3.4)
    ax = fig.subplots()
    for i, (name, result) in enumerate(results.items()):
        clients = [c for c in result["clients"] if "local" in c]
        x = [c["global"]["eigenvalues"][0] for c in clients]
        y = [c["local"]["eigenvalues"][0] for c in clients]
        ax.scatter(x, y, s=10, color=f"C{i}", alpha=0.8, linewidths=0, label=result_label(result))
        ax.axvline(result["gap"]["pooled"], color=f"C{i}", linestyle="--", linewidth=0.8)
    low, high = ax.get_xlim()
    ax.plot([low, high], [low, high], color="0.6", linewidth=0.7, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("λ_max, client loss at the global model")
    ax.set_ylabel("λ_max, client loss at its own model")
    ax.legend(frameon=False, fontsize=7)
    return save_figure(fig, path)


def plot_drift_sharpness(results: Results, path: str | os.PathLike[str]) -> list[Path]:
    """Client drift against sharpness: update norm (left) and cosine with the mean update (right) against lambda_max at the global model."""
    fig = new_figure(2, 1, 3.2, 3.0)
    axes = fig.subplots(1, 2, sharey=True)
    for i, (name, result) in enumerate(results.items()):
        clients = [c for c in result["clients"] if "update_norm" in c]
        sharp = [c["global"]["eigenvalues"][0] for c in clients]
        axes[0].scatter([c["update_norm"] for c in clients], sharp, s=10, color=f"C{i}", alpha=0.8, linewidths=0,
                        label=result_label(result))
        axes[1].scatter([c["cosine_with_mean"] for c in clients], sharp, s=10, color=f"C{i}", alpha=0.8, linewidths=0)
    axes[0].set_xlabel("‖Δ_k‖ (local update norm)")
    axes[1].set_xlabel("cos(Δ_k, mean update)")
    axes[0].set_ylabel("λ_max, client loss at the global model")
    axes[0].set_yscale("log")
    axes[0].legend(frameon=False, fontsize=7)
    return save_figure(fig, path)


def plot_drift_plane(surfaces: Mapping[str, Surface], path: str | os.PathLike[str], *, title: str = "") -> list[Path]:
    """The loss on the plane through the global model and two client models, one panel per data set (pooled, each client's)."""
    from matplotlib.ticker import MaxNLocator

    from landscape.plots.surface import draw_contour, mark_models

    fig = new_figure(len(surfaces), 1, 3.2, 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(surfaces)))
    for ax, (name, surface) in zip(axes, surfaces.items()):
        drawn = draw_contour(ax, surface, "train_loss", filled=True, cmap="coolwarm")
        mark_models(ax, surface, surface.metadata.get("labels"))
        fig.colorbar(drawn, ax=ax, orientation="horizontal", format="%.3g", shrink=0.8, label="loss", ticks=MaxNLocator(4))
        ax.set_title(f"loss on {name}'s samples" if name != "pooled" else "loss on the pooled samples")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def write_client_figures(results: Results, out_dir: str | os.PathLike[str],
                         planes: Mapping[str, Mapping[str, Surface]] | None = None) -> dict[str, list[Path]]:
    """The three comparison figures for ``results`` and one drift-plane figure per entry of ``planes``.

    Args:
        results: name -> ``fedlandscape.clients`` result.
        out_dir: where the figures go (PNG and PDF each).
        planes: name -> that result's plane surfaces (``ClientsReport.planes``).

    Returns:
        figure name -> files written.
    """
    folder = Path(out_dir)
    written = {"clients_lambda": plot_lambda_strips(results, folder / "clients_lambda")}
    if any("local" in c for r in results.values() for c in r["clients"]):
        written["clients_local_global"] = plot_local_global(results, folder / "clients_local_global")
        written["clients_drift"] = plot_drift_sharpness(results, folder / "clients_drift")
    for name, surfaces in (planes or {}).items():
        if surfaces:
            written[f"{name}-plane"] = plot_drift_plane(surfaces, folder / f"{name}-plane", title=result_label(results[name]))
    return written
