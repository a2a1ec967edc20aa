"""The ``Surface`` record and its ``surface.npz`` file (Li et al.'s key names, standard errors, JSON metadata).

File layout (NumPy ``.npz``, read with ``allow_pickle=False``):

=======================  ===================================================================
key                      content
=======================  ===================================================================
xcoordinates             ``(nx,)`` float64 coordinates along the first axis
ycoordinates             ``(ny,)`` float64 coordinates along the second axis (2-D only)
<split>_loss             mean cross-entropy, shape ``(nx,)`` or ``(nx, ny)``; ``[i, j]`` is at ``(x_i, y_j)``
<split>_acc              mean accuracy in percent (as in Li et al.'s files)
<split>_loss_stderr      standard error of ``<split>_loss`` over the evaluated samples
<split>_acc_stderr       standard error of ``<split>_acc``
done                     bool mask of computed points (a partial grid has NaN where not done)
metadata                 0-d string: JSON with format, directions, seeds, checkpoints and sha256, BN mode...
=======================  ===================================================================

Unlike Li et al.'s HDF5 files, the arrays are indexed ``[x, y]`` for every grid shape, and unfinished
points are marked by ``done`` rather than by a value ``<= 0``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedtrain.errors import ConfigError
from fedtrain.io import atomic_write_bytes, to_json
from landscape.settings import SPLITS

__all__ = ["FORMAT", "FORMAT_VERSION", "QUANTITIES", "Surface", "save_surface", "load_surface", "value_key"]

FORMAT = "fedlandscape.surface"
FORMAT_VERSION = 1
QUANTITIES: tuple[str, ...] = ("loss", "acc")


def value_key(split: str, quantity: str, stderr: bool = False) -> str:
    """``train_loss``, ``test_acc_stderr``... (Li et al.'s names plus ``_stderr``)."""
    return f"{split}_{quantity}{'_stderr' if stderr else ''}"


@dataclass(frozen=True)
class Surface:
    """Loss and accuracy on a 1-D or 2-D grid of coordinates along given directions.

    Attributes:
        xcoordinates: coordinates along the first axis.
        ycoordinates: coordinates along the second axis, or ``None`` for a 1-D curve.
        values: arrays of the grid's shape keyed by :func:`value_key` (means and standard errors).
        done: bool mask of the points computed so far (all True for a finished surface).
        metadata: JSON-able description (see :func:`landscape.surface.grid.compute_surface`).
    """

    xcoordinates: np.ndarray
    ycoordinates: np.ndarray | None
    values: dict[str, np.ndarray]
    done: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        """1 for a curve, 2 for a surface."""
        return 1 if self.ycoordinates is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape ``(nx,)`` or ``(nx, ny)``."""
        return tuple(self.done.shape)

    @property
    def complete(self) -> bool:
        """Whether every grid point has been computed."""
        return bool(self.done.all())

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits whose values are stored."""
        return tuple(s for s in SPLITS if value_key(s, "loss") in self.values)

    def value(self, split: str = "train", quantity: str = "loss", *, stderr: bool = False) -> np.ndarray:
        """One array of the grid, e.g. ``value("test", "acc")``.

        Raises:
            ConfigError: the split or quantity was not computed.
        """
        key = value_key(split, quantity, stderr)
        if key not in self.values:
            raise ConfigError(f"This surface has no {key!r}; it holds {', '.join(sorted(self.values))}.")
        return self.values[key]

    def with_metadata(self, **updates: Any) -> Surface:
        """A copy with metadata entries added or replaced."""
        return replace(self, metadata={**self.metadata, **updates})


def save_surface(surface: Surface, path: str | os.PathLike[str]) -> Path:
    """Write a surface as ``.npz`` through a temporary file and a rename (never a half-written file).

    Args:
        surface: the (possibly partial) surface.
        path: destination, conventionally ``surface.npz``.

    Returns:
        The path written.
    """
    arrays: dict[str, np.ndarray] = {"xcoordinates": np.asarray(surface.xcoordinates, dtype=np.float64)}
    if surface.ycoordinates is not None:
        arrays["ycoordinates"] = np.asarray(surface.ycoordinates, dtype=np.float64)
    arrays.update({k: np.asarray(v, dtype=np.float64) for k, v in surface.values.items()})
    arrays["done"] = np.asarray(surface.done, dtype=bool)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **surface.metadata}
    arrays["metadata"] = np.array(to_json(meta))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_surface(path: str | os.PathLike[str]) -> Surface:
    """Read a ``surface.npz`` written by :func:`save_surface` (no pickles are loaded).

    Args:
        path: the file.

    Returns:
        The surface, partial or complete.

    Raises:
        ConfigError: missing, unreadable or foreign file.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"No surface file at {file}. Pass a surface.npz written by `landscape plot-surface`.")
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ConfigError(
            f"{file} could not be read as a surface file ({type(err).__name__}: {err}). It is truncated or not an "
            ".npz; recompute it with `landscape plot-surface`."
        ) from err
    try:
        metadata = json.loads(str(arrays.pop("metadata")))
        if metadata.pop("format") != FORMAT:
            raise KeyError("format")
        done = arrays.pop("done").astype(bool)
        x = arrays.pop("xcoordinates")
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"{file} is not a fedlandscape surface file (missing or bad entry {err}). Li et al.'s HDF5 files and "
            "other .npz files are not read; recompute with `landscape plot-surface`."
        ) from err
    if metadata.pop("format_version", None) != FORMAT_VERSION:
        raise ConfigError(f"{file} has another surface format version than this fedlandscape reads ({FORMAT_VERSION}); recompute it.")
    y = arrays.pop("ycoordinates", None)
    return Surface(x, y, arrays, done, metadata)
