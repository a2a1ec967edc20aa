"""Figure creation and saving: plain ``matplotlib.figure.Figure`` objects, written atomically as PNG and/or PDF.

A ``Figure`` built directly has no global state: nothing registers it with pyplot, nothing has to
close it, and no ``matplotlib.use`` changes the backend of the caller's process (``savefig`` picks
the Agg or PDF canvas from the file format).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fedtrain.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FIGURE_SUFFIXES", "display_text", "new_figure", "figure_paths", "save_figure"]

FIGURE_SUFFIXES: tuple[str, ...] = (".png", ".pdf", ".svg")


def display_text(text: str) -> str:
    """``text`` (a file or folder name) as a figure may render it: undecodable bytes shown as U+FFFD, ``$`` literal.

    A name read from disk may carry bytes that are not UTF-8 (Python keeps them as lone surrogates, which no
    font or PDF can encode), and a ``$`` pair would start matplotlib's mathtext, whose parser fails on most
    names.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")  # a name's undecodable bytes, as os.fsdecode kept them
    except UnicodeEncodeError:  # other lone surrogates: their bytes are no UTF-8 either
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace").replace("$", r"\$")


def new_figure(columns: int = 1, rows: int = 1, width: float = 2.6, height: float = 2.3, *,
               layout: Literal["constrained", "tight"] | None = "constrained") -> Figure:
    """A figure of ``columns`` x ``rows`` panels, each ``width`` x ``height`` inches.

    Args:
        columns: panels per row (only the size depends on it; add the axes with ``add_subplot``/``subplots``).
        rows: rows of panels.
        width: inches per panel.
        height: inches per panel.
        layout: matplotlib's layout engine (``None``: none, the caller places the axes or calls ``tight_layout``).

    Returns:
        An empty :class:`matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width * columns, height * rows), layout=layout)


def figure_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The files :func:`save_figure` writes for ``path``: itself when it ends in ``.png``/``.pdf``/``.svg``, else ``.png`` and ``.pdf``.

    A name with a dot that is not a figure suffix (e.g. ``alpha-0.05``) keeps it: the suffixes are appended.
    """
    target = Path(path)
    if target.suffix.lower() in FIGURE_SUFFIXES:
        return [target]
    return [target.with_name(target.name + ".png"), target.with_name(target.name + ".pdf")]


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 200) -> list[Path]:
    """Write ``figure`` to the files of :func:`figure_paths` atomically (cropped to its content).

    Each file is rendered in memory first and then renamed into place, so a crash never leaves half a figure.

    Args:
        figure: the figure.
        path: output path, with a ``.png``/``.pdf``/``.svg`` suffix or without (then PNG and PDF).
        dpi: resolution of raster output.

    Returns:
        The paths written.
    """
    targets = figure_paths(path)
    for file in targets:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=file.suffix.lstrip(".").lower(), dpi=dpi, bbox_inches="tight")
        atomic_write_bytes(file, buffer.getvalue())
    return targets
