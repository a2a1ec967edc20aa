"""Paper-style plots of the Hessian eigenvalue density (log-scale density, top eigenvalues marked)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedtrain.errors import ConfigError
from landscape.plots.figure import display_text, new_figure, save_figure

__all__ = ["draw_spectral_density", "plot_spectral_density"]

# Floor added to the density before the log scale, as in PyHessian's density plot (Ghorbani et al. 2019).
DENSITY_FLOOR = 1e-7


def draw_spectral_density(
    ax: Any,
    grid: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    *,
    eigenvalues: Sequence[float] | None = None,
    label: str | None = None,
    color: str | None = None,
) -> Any:
    """Draw one smoothed density on ``ax`` (log y axis), marking ``eigenvalues`` with dotted vertical lines.

    Several calls on the same axes overlay several models, with a legend when labels are given.

    Args:
        ax: a matplotlib ``Axes``.
        grid: eigenvalue grid.
        values: density on ``grid`` (integrating to 1).
        eigenvalues: top eigenvalues to mark, e.g. the report's ``eigenvalues``.
        label: legend label.
        color: line colour (matplotlib's cycle when ``None``).

    Returns:
        The density's ``Line2D``.
    """
    grid_array = np.asarray(grid, dtype=float)
    values_array = np.asarray(values, dtype=float)
    (line,) = ax.semilogy(grid_array, values_array + DENSITY_FLOOR, label=label, color=color, linewidth=1.2)
    for value in eigenvalues or []:
        ax.axvline(float(value), color=line.get_color(), linestyle=":", linewidth=0.9, alpha=0.8)
    ax.set_xlabel("Eigenvalue")
    ax.set_ylabel("Density (log scale)")
    ax.set_ylim(bottom=DENSITY_FLOOR)
    if label is not None:
        ax.legend(frameon=False)
    return line


def plot_spectral_density(report: Mapping[str, Any], path: str | os.PathLike[str], *, pdf: bool = False, title: str | None = None) -> list[Path]:
    """Write the density of a Hessian report (``HessianReport.to_dict()``) as PNG, plus PDF when asked.

    The format follows the suffix of ``path`` (``.png`` or ``.pdf``); ``pdf=True`` also writes a PDF
    next to a PNG. Files are written atomically.

    Returns:
        The paths written.

    Raises:
        ConfigError: the report has no density, or an unsupported suffix.
    """
    density = report.get("density")
    if not density or density.get("grid") is None:
        raise ConfigError("The report has no eigenvalue density to plot: run the analysis with --density.")
    target = Path(path)
    if target.suffix.lower() not in (".png", ".pdf"):
        raise ConfigError(f"The plot path must end in .png or .pdf, got {target.name!r}.")
    fig = new_figure(1, 1, 5, 3.6, layout=None)
    ax = fig.subplots()
    draw_spectral_density(ax, density["grid"], density["values"], eigenvalues=report.get("eigenvalues"))
    if title:
        ax.set_title(display_text(title))
    fig.tight_layout()
    outputs = [target] + ([target.with_suffix(".pdf")] if pdf and target.suffix.lower() == ".png" else [])
    for output in outputs:
        save_figure(fig, output, dpi=150)
    return outputs
