"""The figure of a tuning sweep: validation accuracy against rho, one line per algorithm (and eta, lr), error bars over seeds."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedtrain.errors import ConfigError
from landscape.plots.figure import new_figure, save_figure

__all__ = ["plot_sweep"]


def _series_label(algorithm: str, eta: float | None, lr: float, lrs: int) -> str:
    parts = [algorithm] + ([f"eta={eta:g}"] if eta is not None else []) + ([f"lr={lr:g}"] if lrs > 1 else [])
    return " ".join(parts)


def plot_sweep(record: Mapping[str, Any], path: str | os.PathLike[str]) -> list[Path]:
    """Validation accuracy (%) of every point of a sweep (:func:`fedtrain.sweep.sweep`'s record) against rho.

    One line per (algorithm, eta, lr) with error bars of one standard deviation over seeds (none with one
    seed); a point without rho (FedAvg) is a horizontal dashed line with its spread as a band; the best
    point of each algorithm is circled. The rho axis is logarithmic when every rho is > 0.

    Args:
        record: the ``sweep.json`` record (``points``, ``best``, ``settings``).
        path: output file (``.png``/``.pdf``/``.svg``; without a suffix both PNG and PDF).

    Returns:
        The files written.

    Raises:
        ConfigError: the record holds no point.
    """
    points = list(record.get("points", []))
    if not points:
        raise ConfigError("This sweep record holds no point to plot; run the sweep first.")
    lrs = len({p["lr"] for p in points})
    figure = new_figure(width=4.2, height=3.0)
    ax = figure.add_subplot()
    series: dict[tuple, list[Mapping[str, Any]]] = {}
    for p in points:
        series.setdefault((p["algorithm"], p["eta"], p["lr"]), []).append(p)
    rhos = sorted({p["rho"] for p in points if p["rho"] is not None})
    for n, ((algorithm, eta, lr), members) in enumerate(series.items()):
        color, label = f"C{n % 10}", _series_label(algorithm, eta, lr, lrs)
        stds = [100 * (m["std"] or 0.0) for m in members]
        if members[0]["rho"] is None:  # FedAvg: no radius, a reference level across the rho axis
            mean = 100 * members[0]["mean"]
            ax.axhline(mean, color=color, linestyle="--", linewidth=1, label=label)
            if stds[0] > 0:
                ax.axhspan(mean - stds[0], mean + stds[0], color=color, alpha=0.15, linewidth=0)
            continue
        members = sorted(members, key=lambda m: m["rho"])
        ax.errorbar([m["rho"] for m in members], [100 * m["mean"] for m in members],
                    yerr=[100 * (m["std"] or 0.0) for m in members], marker="o", markersize=3, capsize=2,
                    color=color, label=label)
    for best in record.get("best", {}).get("per_algorithm", {}).values():
        if best["rho"] is not None:
            ax.plot([best["rho"]], [100 * best["mean"]], marker="o", markersize=10, markerfacecolor="none",
                    markeredgecolor="k", linestyle="none")
    if rhos and rhos[0] > 0:
        ax.set_xscale("log")
        ax.minorticks_off()  # the swept radii are the ticks: log-scale minor labels would overlap them
    if rhos:
        ax.set_xticks(rhos, [f"{r:g}" for r in rhos])
    settings = record.get("settings", {})
    seeds = max(p["n"] for p in points)
    ax.set_xlabel(r"$\rho$")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{settings.get('dataset', '')}, {settings.get('rounds', '?')} rounds, "
                 f"{seeds} seed{'s' if seeds > 1 else ''} (error bars: std)", fontsize=8)
    ax.legend(fontsize=6)
    return save_figure(figure, path)
