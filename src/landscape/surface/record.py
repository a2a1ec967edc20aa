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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedtrain.errors import ConfigError
from fedtrain.io import atomic_write_bytes, to_json
from fedtrain.validate import Rule, UntrustedFile, list_of, mapping_rule, npz_arrays, number, optional, text
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
    """Read a ``surface.npz`` written by :func:`save_surface`, as untrusted input (no pickles are loaded).

    Each array's declared size is checked against :data:`~fedtrain.validate.MAX_NPZ_MEMBER_BYTES` from its
    npy header before it is loaded (:func:`fedtrain.validate.npz_arrays`); then the file must hold the
    metadata of a fedlandscape surface, 1-D finite coordinates, only known value arrays, each of the
    grid's shape (2-D values need ``ycoordinates``), a ``done`` mask with at least one computed point, and
    at the computed points losses that are not NaN (at least one finite per array) and accuracies in [0, 100].

    Args:
        path: the file.

    Returns:
        The surface, partial or complete.

    Raises:
        ConfigError: missing, unreadable, foreign or inconsistent file (one paragraph naming the problem).
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"No surface file at {file}. Pass a surface.npz written by `landscape plot-surface`.")
    untrusted = UntrustedFile(file, "surface file (surface.npz)", _FIX, ConfigError)
    arrays = npz_arrays(untrusted)
    try:
        metadata = json.loads(str(arrays.pop("metadata")))
        if not isinstance(metadata, dict) or metadata.pop("format") != FORMAT:
            raise KeyError("format")
        done = arrays.pop("done")
        x = arrays.pop("xcoordinates")
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"{file} is not a fedlandscape surface file (missing or bad entry {err}). Li et al.'s HDF5 files and "
            "other .npz files are not read; recompute with `landscape plot-surface`."
        ) from err
    if metadata.pop("format_version", None) != FORMAT_VERSION:
        raise ConfigError(f"{file} has another surface format version than this fedlandscape reads ({FORMAT_VERSION}); recompute it.")
    y = arrays.pop("ycoordinates", None)
    _check_metadata(metadata, untrusted)
    _check_grid(x, y, done, arrays, untrusted)
    return Surface(x, y, arrays, done.astype(bool), metadata)


_FIX = "Recompute it with `landscape plot-surface` (a partial file with --resume, after fixing or removing it)."
_KNOWN_VALUES = {value_key(s, q, e) for s in SPLITS for q in QUANTITIES for e in (False, True)}
_METADATA: dict[str, Rule] = {
    "kind": text(),
    "bn": text(),
    "labels": list_of(text()),
    "num_examples": mapping_rule(),
    "request": mapping_rule(),
    "device_used": mapping_rule(),
    "device_runs": list_of(mapping_rule()),
    "checkpoints": list_of(Rule("a mapping with a string 'path'", lambda c: isinstance(c, dict) and isinstance(c.get("path"), str))),
    "directions": mapping_rule(),
}


def _check_metadata(metadata: dict[str, Any], file: UntrustedFile) -> None:
    """The metadata entries that resuming and plotting read have their types."""
    for key, rule in _METADATA.items():
        file.field(metadata, key, optional(rule), "metadata ", default=None)
    coordinates = (metadata.get("directions") or {}).get("model_coordinates")
    file.field({"model_coordinates": coordinates}, "model_coordinates", optional(list_of(list_of(number()))), "metadata directions ")


def _check_grid(x: np.ndarray, y: np.ndarray | None, done: np.ndarray, values: dict[str, np.ndarray], file: UntrustedFile) -> None:
    """Coordinates, mask and values describe one grid, with at least one computed point of plausible values."""
    for name, axis in (("xcoordinates", x), ("ycoordinates", y)):
        if axis is not None and (axis.ndim != 1 or axis.size < 1 or axis.dtype.kind not in "fi" or not np.isfinite(axis).all()):
            file.fail(f"{name} must be a non-empty 1-D array of finite numbers, got {axis.dtype} of shape {list(axis.shape)}")
    shape = (x.size,) if y is None else (x.size, y.size)
    hint = " (2-D values need ycoordinates)" if y is None and done.ndim == 2 else ""
    if done.dtype != bool or done.shape != shape:
        file.fail(f"done must be a bool mask of the grid's shape {list(shape)}, got {done.dtype} of shape {list(done.shape)}{hint}")
    if not done.any():
        file.fail("no point of its grid is done (an empty partial file); delete it and compute the surface afresh")
    unknown = sorted(set(values) - _KNOWN_VALUES)
    if unknown or not any(k.endswith("_loss") for k in values):
        file.fail(f"it holds {'the unknown arrays ' + ', '.join(unknown) if unknown else 'no loss values'}; a surface holds "
                  f"{', '.join(sorted(_KNOWN_VALUES))}")
    for key, array in values.items():
        if array.shape != shape or array.dtype.kind != "f":
            file.fail(f"{key} must be floating-point values of the grid's shape {list(shape)}, got {array.dtype} of shape "
                      f"{list(array.shape)}{hint}")
        computed = array[done]
        if key.endswith("_stderr"):
            bad = (computed < 0).any()
        elif key.endswith("_acc"):
            bad = not (np.isfinite(computed) & (computed >= 0) & (computed <= 100)).all()
        else:
            bad = np.isnan(computed).any() or (computed < 0).any() or not np.isfinite(computed).any()
        if bad:
            file.fail(f"{key} holds impossible values at computed points (NaN, negative, an accuracy outside [0, 100], or "
                      "no finite loss at all)")
