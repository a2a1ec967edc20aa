"""Sharpness during training: lambda_max of the global model against rounds, with test accuracy and the stability threshold 2 / lr.

Reads the metrics records of runs trained with ``--track-sharpness`` (``sharpness_lambda_max`` on the
tracked rounds, ``test_accuracy`` and ``lr`` on every evaluated round). The threshold ``2 / lr`` is where
gradient descent with step ``lr`` on a quadratic of curvature lambda stops being stable; Cohen et al.
(ICLR 2021, "Gradient descent on neural networks typically occurs at the edge of stability") show that
full-batch training drives lambda_max up to it. The clients here take a few SGD steps on their own data,
so the global model's lambda_max need not reach it: the line shows how far it stays below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedtrain.errors import ConfigError
from landscape.plots.figure import display_text, new_figure, save_figure

__all__ = ["sharpness_series", "plot_sharpness_during_training"]


def sharpness_series(metrics: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """The tracked rounds' ``round``, ``lambda_max``, ``lr``, ``threshold`` (2 / lr), ``accuracy``, ``products`` and ``seconds``.

    Raises:
        ConfigError: no record holds ``sharpness_lambda_max`` (the run was not trained with ``--track-sharpness``).
    """
    rows = [m for m in metrics if m.get("sharpness_lambda_max") is not None]
    if not rows:
        raise ConfigError("These metrics hold no sharpness_lambda_max: train the run with --track-sharpness EVERY.")
    return {
        "round": [int(m["round"]) for m in rows],
        "lambda_max": [float(m["sharpness_lambda_max"]) for m in rows],
        "lr": [float(m["lr"]) for m in rows],
        "threshold": [2.0 / float(m["lr"]) for m in rows],
        "accuracy": [float(m["test_accuracy"]) for m in rows],
        "products": [int(m["sharpness_products"]) for m in rows],
        "seconds": [float(m["sharpness_seconds"]) for m in rows],
    }


def plot_sharpness_during_training(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike[str], *, title: str | None = None
) -> list[Path]:
    """One panel per run: lambda_max (log scale) and 2 / lr against rounds, test accuracy on a second axis.

    Args:
        runs: label -> the run's metrics records (``metrics.jsonl`` lines).
        path: output file (``.png``/``.pdf``/``.svg``; without a suffix both PNG and PDF).
        title: figure title.

    Returns:
        The files written.

    Raises:
        ConfigError: no run, or a run without tracked sharpness.
    """
    if not runs:
        raise ConfigError("plot_sharpness_during_training needs at least one run.")
    series = {label: sharpness_series(metrics) for label, metrics in runs.items()}
    figure = new_figure(columns=len(series), width=3.4, height=2.8)
    axes = figure.subplots(1, len(series), squeeze=False)[0]
    for ax, (label, s) in zip(axes, series.items()):
        ax.plot(s["round"], s["lambda_max"], "o-", color="C3", label=r"$\lambda_{max}$ (global model)")
        ax.step(s["round"], s["threshold"], where="mid", color="0.4", linestyle="--", label=r"$2/\eta$ (stability threshold)")
        ax.set_yscale("log")
        ax.set_xlabel("round")
        ax.set_ylabel(r"$\lambda_{max}$")
        ax.set_title(display_text(label), fontsize=9)
        twin = ax.twinx()
        twin.plot(s["round"], [100 * a for a in s["accuracy"]], "s:", color="C0", markersize=3, label="test accuracy")
        twin.set_ylabel("test accuracy (%)", color="C0")
        twin.set_ylim(0, 100)
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], fontsize=6, loc="center right")
    if title:
        figure.suptitle(display_text(title), fontsize=10)
    return save_figure(figure, path)
