"""Paper-style pictures of loss surfaces: 3-D surfaces, labelled contours, heat maps, 1-D curves, shared colour scales.

``draw_*`` functions draw one surface on a given matplotlib Axes and return what they drew (for a
colour bar); ``plot_*`` functions build whole figures with :class:`matplotlib.figure.Figure` (no
pyplot, no global state) and write PNG and PDF through :func:`landscape.plots.figure.save_figure`. Everything
reads a :class:`~landscape.surface.record.Surface`, so re-plotting a saved ``surface.npz`` needs no
recomputation. With ``log_scale`` the plotted quantity is ``log10`` of the value (as Li et al.'s ``--log``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedtrain.errors import ConfigError
from landscape.plots.figure import display_text, new_figure, save_figure
from landscape.surface.record import Surface

__all__ = [
    "PLOT_KINDS",
    "grid_values",
    "shared_limits",
    "check_vmax",
    "draw_surface_3d",
    "draw_contour",
    "draw_heatmap",
    "draw_curve_1d",
    "mark_models",
    "plot_surface",
    "plot_surfaces",
    "write_figures",
]

PLOT_KINDS: tuple[str, ...] = ("3d", "contour", "heatmap")
_STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7}
_LABELS = {"loss": "loss", "acc": "accuracy (%)", "loss_stderr": "loss s.e.", "acc_stderr": "accuracy s.e. (%)"}


def _label(key: str, log_scale: bool) -> str:
    split, _, quantity = key.partition("_")
    text = f"{split} {_LABELS.get(quantity, quantity)}"
    return f"log10 {text}" if log_scale else text


def grid_values(surface: Surface, key: str, *, log_scale: bool = False) -> np.ndarray:
    """The array ``surface.values[key]`` (NaN where not computed), as ``log10`` when ``log_scale``.

    Raises:
        ConfigError: unknown key, or ``log_scale`` with non-positive values.
    """
    if key not in surface.values:
        raise ConfigError(f"The surface has no {key!r}; it holds {', '.join(sorted(surface.values))}.")
    values = np.asarray(surface.values[key], dtype=np.float64)
    if log_scale:
        if np.nanmin(values) <= 0:
            raise ConfigError(f"{key} has values <= 0, which have no logarithm; plot it without --log-scale.")
        values = np.log10(values)
    return values


def shared_limits(surfaces: Sequence[Surface], key: str, *, log_scale: bool = False) -> tuple[float, float]:
    """One colour scale for several surfaces: the min and max of ``key`` over all of them."""
    arrays = [grid_values(s, key, log_scale=log_scale) for s in surfaces]
    return float(min(np.nanmin(a) for a in arrays)), float(max(np.nanmax(a) for a in arrays))


def check_vmax(surfaces: Sequence[Surface], key: str, vmax: float | None, *, log_scale: bool = False) -> None:
    """Refuse a ``vmax`` (the top of the colour scale) that is not a finite number or is at or below every value of ``key``.

    Below every value, all points would be clipped to one colour and matplotlib refuses the colour scale.

    Raises:
        ConfigError: what ``vmax`` was, the range of the values, and what to give instead.
    """
    if vmax is None:
        return
    if not isinstance(vmax, (int, float)) or isinstance(vmax, bool) or not np.isfinite(vmax):
        raise ConfigError(f"vmax (--vmax) must be a finite number, got {vmax!r}.")
    low, high = shared_limits(surfaces, key, log_scale=log_scale)
    if vmax <= low:
        units = "log10 " if log_scale else ""
        raise ConfigError(f"vmax (--vmax) {vmax:g} is at or below the lowest {units}{key.replace('_', ' ')} of the surfaces "
                          f"({low:.6g}; they span {low:.6g} .. {high:.6g}): every point would be clipped to one colour. "
                          f"Give a vmax above {low:.6g}{' (in log10 units, as --log-scale plots)' if log_scale else ''}, or none.")


def _mesh(surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    if surface.ndim != 2:
        raise ConfigError("This plot needs a 2-D surface; draw 1-D curves with draw_curve_1d.")
    return np.meshgrid(surface.xcoordinates, surface.ycoordinates, indexing="ij")


def _axis_labels(ax: Any, surface: Surface) -> None:
    kind = surface.metadata.get("kind", "")
    names = {"hessian": ("eigenvector 1", "eigenvector 2"), "plane": ("u (parameter distance)", "v (parameter distance)"),
             "interpolation": ("t (0 = A, 1 = B)", "")}.get(kind, ("direction 1", "direction 2"))
    ax.set_xlabel(names[0])
    if surface.ndim == 2:
        ax.set_ylabel(names[1])


def draw_surface_3d(ax: Any, surface: Surface, key: str = "train_loss", *, vmin: float | None = None,
                    vmax: float | None = None, log_scale: bool = False, cmap: str = "viridis") -> Any:
    """A 3-D surface in the style of the paper's Fig. 1 on a ``projection="3d"`` Axes; values above ``vmax`` are clipped.

    Returns:
        The ``Poly3DCollection`` (a mappable for a colour bar).
    """
    xx, yy = _mesh(surface)
    zz = grid_values(surface, key, log_scale=log_scale)
    vmin = float(np.nanmin(zz)) if vmin is None else vmin
    vmax = float(np.nanmax(zz)) if vmax is None else vmax
    zz = np.clip(zz, None, vmax)
    drawn = ax.plot_surface(xx, yy, zz, cmap=cmap, vmin=vmin, vmax=vmax, rstride=1, cstride=1, linewidth=0, antialiased=True)
    ax.set_zlim(vmin, vmax)
    _axis_labels(ax, surface)
    # no z label: it collides with the colour bar, which carries the same name
    ax.locator_params(axis="x", nbins=4)
    ax.locator_params(axis="y", nbins=4)  # fewer ticks: the 3-D projection crowds them at paper size
    ax.view_init(elev=30, azim=-60)
    return drawn


def draw_contour(ax: Any, surface: Surface, key: str = "train_loss", *, vmin: float | None = None,
                 vmax: float | None = None, levels: int = 15, log_scale: bool = False, cmap: str = "viridis",
                 filled: bool = False) -> Any:
    """Labelled contour lines (or filled contours with ``filled``) between ``vmin`` and ``vmax``.

    Returns:
        The ``ContourSet``.
    """
    xx, yy = _mesh(surface)
    zz = grid_values(surface, key, log_scale=log_scale)
    vmin = float(np.nanmin(zz)) if vmin is None else vmin
    vmax = float(np.nanmax(zz)) if vmax is None else vmax
    steps = np.linspace(vmin, vmax, levels) if vmax > vmin else np.array([vmin, vmin + 1e-12])
    if filled:
        drawn = ax.contourf(xx, yy, np.clip(zz, None, vmax), levels=steps, cmap=cmap, vmin=vmin, vmax=vmax, extend="max")
    else:
        drawn = ax.contour(xx, yy, zz, levels=steps, cmap=cmap, vmin=vmin, vmax=vmax, linewidths=0.8)
        ax.clabel(drawn, drawn.levels[::2], inline=True, fontsize=6, fmt="%.3g")
    ax.set_aspect("equal" if surface.metadata.get("kind") == "plane" else "auto")
    _axis_labels(ax, surface)
    return drawn


def draw_heatmap(ax: Any, surface: Surface, key: str = "train_loss", *, vmin: float | None = None,
                 vmax: float | None = None, log_scale: bool = False, cmap: str = "viridis") -> Any:
    """A filled heat map (one cell per grid point; uncomputed points are blank).

    Returns:
        The ``QuadMesh``.
    """
    xx, yy = _mesh(surface)
    zz = grid_values(surface, key, log_scale=log_scale)
    drawn = ax.pcolormesh(xx, yy, np.ma.masked_invalid(zz), cmap=cmap, vmin=vmin, vmax=vmax, shading="nearest")
    ax.set_aspect("equal" if surface.metadata.get("kind") == "plane" else "auto")
    _axis_labels(ax, surface)
    return drawn


def draw_curve_1d(ax: Any, surface: Surface, key: str = "train_loss", *, log_scale: bool = False,
                  label: str | None = None, color: str | None = None) -> Any:
    """A 1-D curve with a shaded band of +-2 standard errors (when ``key + "_stderr"`` is stored).

    Returns:
        The ``Line2D``.
    """
    if surface.ndim != 1:
        raise ConfigError("draw_curve_1d needs a 1-D surface (an interpolation or --dims 1).")
    x = surface.xcoordinates
    mean = np.asarray(surface.values[key] if key in surface.values else grid_values(surface, key), dtype=np.float64)
    (line,) = ax.plot(x, mean, label=label, color=color, linewidth=1.2)
    stderr = surface.values.get(f"{key}_stderr")
    if stderr is not None:
        ax.fill_between(x, mean - 2 * stderr, mean + 2 * stderr, color=line.get_color(), alpha=0.25, linewidth=0)
    if log_scale:
        ax.set_yscale("log")
    for coordinate in surface.metadata.get("directions", {}).get("model_coordinates", []):
        ax.axvline(coordinate[0], color="0.5", linewidth=0.6, linestyle=":")
    _axis_labels(ax, surface)
    ax.set_ylabel(_label(key, False))
    return line


def mark_models(ax: Any, surface: Surface, labels: Sequence[str] | None = None, *, zorder: int = 5) -> None:
    """Mark the models of a plane (or the centre of a random surface) with dots and their labels."""
    coordinates = surface.metadata.get("directions", {}).get("model_coordinates") or [[0.0, 0.0]]
    names = list(labels) if labels is not None else [Path(c["path"]).stem for c in surface.metadata.get("checkpoints", [])]
    for k, (x, y) in enumerate(coordinates):
        ax.plot([x], [y], "o", color="white", markeredgecolor="black", markersize=5, zorder=zorder)
        if k < len(names):
            ax.annotate(names[k], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, zorder=zorder)


def plot_surface(surface: Surface, path: str | os.PathLike[str], *, key: str = "train_loss", kind: str = "contour",
                 log_scale: bool = False, vmax: float | None = None, title: str | None = None) -> list[Path]:
    """One surface as a figure: a ``kind`` plot for 2-D surfaces (models marked), a curve with its band for 1-D.

    Args:
        surface: the surface.
        path: output path without suffix (PNG and PDF are written) or with ``.png``/``.pdf``.
        key: e.g. ``"train_loss"``, ``"test_acc"``, ``"train_loss_stderr"``.
        kind: ``"3d"``, ``"contour"`` or ``"heatmap"`` (ignored for 1-D).
        log_scale: plot ``log10`` of the values.
        vmax: clip the colour scale (and 3-D heights) here.
        title: panel title.

    Returns:
        The files written.
    """
    return plot_surfaces({title or "": surface}, path, key=key, kind=kind, log_scale=log_scale, vmax=vmax)


def plot_surfaces(named_surfaces: Mapping[str, Surface], path: str | os.PathLike[str], *, key: str = "train_loss",
                  kind: str = "3d", shared_scale: bool = True, log_scale: bool = False, vmax: float | None = None,
                  columns: int | None = None) -> list[Path]:
    """Several surfaces side by side, on one shared colour scale by default (the paper's comparison).

    Args:
        named_surfaces: panel title -> surface (all 1-D or all 2-D).
        path: output path without suffix (PNG and PDF) or with one.
        key: the quantity to plot.
        kind: ``"3d"``, ``"contour"`` or ``"heatmap"`` for 2-D surfaces.
        shared_scale: one colour scale (and z-range) for all panels, with one colour bar.
        log_scale: plot ``log10`` of the values.
        vmax: upper end of the colour scale (values above are clipped), e.g. to hide a far-away blow-up.
        columns: panels per row (default: all in one row).

    Returns:
        The files written.

    Raises:
        ConfigError: no surfaces, mixed 1-D and 2-D, or an unknown kind.
    """
    import matplotlib

    if not named_surfaces:
        raise ConfigError("Nothing to plot: pass at least one surface.")
    if kind not in PLOT_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(PLOT_KINDS)}, got {kind!r}.")
    surfaces = list(named_surfaces.values())
    if len({s.ndim for s in surfaces}) != 1:
        raise ConfigError("Cannot put 1-D curves and 2-D surfaces in one figure; plot them separately.")
    with matplotlib.rc_context(_STYLE):
        if surfaces[0].ndim == 1:
            figure = new_figure(1, width=3.4, height=2.4)
            ax = figure.add_subplot()
            for name, surface in named_surfaces.items():
                draw_curve_1d(ax, surface, key, log_scale=log_scale, label=display_text(name) or None)
            if any(named_surfaces):
                ax.legend(frameon=False)
            return save_figure(figure, path)
        check_vmax(surfaces, key, vmax, log_scale=log_scale)
        vmin, top = shared_limits(surfaces, key, log_scale=log_scale) if shared_scale else (None, None)
        top = vmax if vmax is not None else top
        columns = columns or len(surfaces)
        rows = -(-len(surfaces) // columns)
        figure = new_figure(columns, rows, height=2.6 if kind == "3d" else 2.3)
        drawn = None
        for index, (name, surface) in enumerate(named_surfaces.items()):
            projection = "3d" if kind == "3d" else None
            ax = figure.add_subplot(rows, columns, index + 1, projection=projection)
            if kind == "3d":
                drawn = draw_surface_3d(ax, surface, key, vmin=vmin, vmax=top, log_scale=log_scale)
            elif kind == "contour":
                drawn = draw_contour(ax, surface, key, vmin=vmin, vmax=top, log_scale=log_scale)
                mark_models(ax, surface, None if surface.metadata.get("kind") == "plane" else [""])
            else:
                drawn = draw_heatmap(ax, surface, key, vmin=vmin, vmax=top, log_scale=log_scale)
                mark_models(ax, surface, None if surface.metadata.get("kind") == "plane" else [""])
            if name:
                ax.set_title(display_text(name))
            if not shared_scale:
                figure.colorbar(drawn, ax=ax, shrink=0.7, label=_label(key, log_scale))
        if shared_scale and drawn is not None:
            figure.colorbar(drawn, ax=figure.axes, shrink=0.7, label=_label(key, log_scale))
        return save_figure(figure, path)


def write_figures(named_surfaces: Mapping[str, Surface], out_dir: str | os.PathLike[str], *,
                  kinds: Sequence[str] = PLOT_KINDS, log_scale: bool = False, vmax: float | None = None) -> list[Path]:
    """The standard set of figures for surfaces of one kind, each split's loss and accuracy on shared scales.

    2-D: ``<split>_loss_<kind>`` for each kind, ``<split>_acc_heatmap`` and ``<split>_loss_stderr_heatmap``;
    1-D: ``<split>_loss_curve`` and ``<split>_acc_curve``. PNG and PDF each.

    Args:
        named_surfaces: panel title -> surface.
        out_dir: folder for the figures.
        kinds: 2-D plot kinds to draw.
        log_scale: loss plots in ``log10``.
        vmax: clip the loss colour scale here.

    Returns:
        The files written.
    """
    out = Path(out_dir)
    surfaces = list(named_surfaces.values())
    splits = [s for s in surfaces[0].splits if all(s in other.splits for other in surfaces)]
    for split in splits:  # before the first file: a bad vmax must not leave half the figures
        check_vmax(surfaces, f"{split}_loss", vmax, log_scale=log_scale)
    written: list[Path] = []
    for split in splits:
        if surfaces[0].ndim == 1:
            for quantity in ("loss", "acc"):
                written += plot_surfaces(named_surfaces, out / f"{split}_{quantity}_curve", key=f"{split}_{quantity}",
                                         log_scale=log_scale and quantity == "loss")
            continue
        for kind in kinds:
            written += plot_surfaces(named_surfaces, out / f"{split}_loss_{kind}", key=f"{split}_loss", kind=kind,
                                     log_scale=log_scale, vmax=vmax)
        written += plot_surfaces(named_surfaces, out / f"{split}_acc_heatmap", key=f"{split}_acc", kind="heatmap")
        written += plot_surfaces(named_surfaces, out / f"{split}_loss_stderr_heatmap", key=f"{split}_loss_stderr", kind="heatmap")
    return written
