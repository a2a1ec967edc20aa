"""The surface grid: its coordinates (around an origin, along a line, over a plane) and its chunked, resumable evaluation.

A surface is the loss (and accuracy) at ``origin + a * axis_0 + b * axis_1`` for ``(a, b)`` on a grid
(Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"), along filter-normalised random
directions, top Hessian eigenvectors, the line between two models, or the plane through three
(Garipov et al. 2018). The grid is computed in fixed chunks of points, each chunk in one pass over
in-memory data, so a saved partial grid is finished later with identical numbers. The evaluation runs
on one device (the data, directions and model copy are moved there once); values come back to the host
once per chunk and are kept as NumPy arrays. Checkpoint files are :mod:`landscape.surface.api`'s
business; nothing here reads or writes a file.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from fedtrain.batchnorm import has_batchnorm
from fedtrain.device import device_record
from fedtrain.errors import ConfigError
from landscape.settings import SPLITS
from landscape.surface.directions import Directions, directions_sha256
from landscape.surface.evaluate import Evaluator, point_stats
from landscape.surface.record import QUANTITIES, Surface, value_key

__all__ = [
    "ChunkShare",
    "symmetric_coordinates",
    "interpolation_coordinates",
    "plane_coordinates",
    "compute_surface",
]


class ChunkShare(Protocol):
    """A process's part of a grid evaluated by several (see :func:`compute_surface`'s ``share``)."""

    rank: int
    world: int

    def merge(self, values: dict[str, np.ndarray], done: np.ndarray, before: np.ndarray) -> None:
        """Give every process the points any of them evaluated since ``before`` (a collective call), in place."""


def symmetric_coordinates(range: float, steps: int) -> np.ndarray:  # noqa: A002 - one name across API, CLI and JSON
    """``steps`` coordinates from ``-range`` to ``range``, exactly symmetric; 0 is on the grid when ``steps`` is odd.

    The k-th coordinate is ``range * (2k - (steps - 1)) / (steps - 1)``: the integer numerator makes
    mirrored coordinates exact negatives and the centre exactly 0 (``np.linspace`` does not promise either).

    Raises:
        ConfigError: ``range <= 0`` or ``steps < 2``.
    """
    if not range > 0 or not np.isfinite(range):
        raise ConfigError(f"The range must be a positive number, got {range}. Use e.g. 1.0 (Li et al.'s default).")
    _check_axis(steps)
    numerators = 2.0 * np.arange(steps) - (steps - 1)
    return range * numerators / (steps - 1)


def interpolation_coordinates(steps: int, margin: float = 0.5) -> np.ndarray:
    """Coordinates ``t`` for the line A (t=0) -> B (t=1), extended by about ``margin`` on each side.

    The spacing is ``1/m`` with an integer ``m``, so 0 and 1 are on the grid exactly; the actual
    margins are multiples of the spacing closest to ``margin``.

    Raises:
        ConfigError: ``steps < 2`` or a negative margin.
    """
    _check_axis(steps, margin)
    intervals = max(1, round((steps - 1) / (1 + 2 * margin)))
    before = min(round(margin * intervals), steps - 1 - intervals)  # keep B (index before + m) on the grid
    return (np.arange(steps) - before) / intervals


def plane_coordinates(model_coordinates: Sequence[Sequence[float]], steps: int, margin: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A grid over the models' bounding box in a plane, widened by ``margin`` times its size on each side.

    Raises:
        ConfigError: ``steps < 2`` or a negative margin.
    """
    _check_axis(steps, margin)
    points = np.asarray(model_coordinates, dtype=np.float64)
    axes = []
    for column in points.T:
        low, high = column.min(), column.max()
        pad = margin * (high - low)
        axes.append(np.linspace(low - pad, high + pad, steps))
    return axes[0], axes[1]


def _check_axis(steps: int, margin: float = 0.0) -> None:
    """The preconditions of every axis (the settings record checks the same for users; this guards direct calls)."""
    if steps < 2:
        raise ConfigError(f"A grid needs at least 2 steps per axis, got {steps}.")
    if not margin >= 0:
        raise ConfigError(f"The margin must be >= 0, got {margin}.")


def _grid(coordinates: Sequence[np.ndarray]) -> list[tuple[float, ...]]:
    """Grid points in ``[x, y]`` (row-major, ``ij``) order."""
    return [tuple(float(c) for c in point) for point in itertools.product(*coordinates)]


def compute_surface(
    model: nn.Module,
    directions: Directions,
    coordinates: Sequence[np.ndarray],
    data: Mapping[str, tuple[Tensor, Tensor]],
    *,
    bn: str = "eval",
    recalibration_inputs: Tensor | None = None,
    batch_size: int = 64,
    points_per_pass: int = 8,
    method: str = "loop",
    resume_from: Surface | None = None,
    on_chunk: Callable[[Surface], None] | None = None,
    metadata: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    share: ChunkShare | None = None,
) -> Surface:
    """Loss and accuracy at every grid point, chunk by chunk, optionally finishing a partial surface.

    The point at grid index ``(i, j)`` has parameters ``origin + x_i * axes[0] + y_j * axes[1]``;
    each quantity is the mean over the samples of ``data[split]`` with its standard error.
    Points are processed in fixed chunks of ``points_per_pass`` (in ``[x, y]`` order), each chunk
    in one pass over the data; ``on_chunk`` receives the partial surface after each chunk (to save it).
    The data, the directions and a private copy of the model are moved to ``device`` once; the
    values of a chunk come back to the host in one transfer.

    Args:
        model: the architecture; with ``bn="eval"`` also the frozen BatchNorm statistics. Never modified.
        directions: origin and one or two axes (see :mod:`landscape.surface.directions`).
        coordinates: one coordinate array per axis.
        data: split name (``"train"``/``"test"``) -> ``(inputs, labels)``, normalised, in memory.
        bn: ``"eval"`` or ``"recalibrate"`` (see :class:`~landscape.surface.evaluate.Evaluator`).
        recalibration_inputs: inputs for ``bn="recalibrate"``.
        batch_size: samples per forward pass.
        points_per_pass: grid points evaluated per pass over the data.
        method: ``"loop"`` or ``"vmap"``.
        resume_from: a partial surface of the same grid whose done points are kept.
        on_chunk: called with the surface so far after every chunk.
        metadata: extra JSON-able entries for the result's metadata.
        device: where the grid is evaluated (the caller resolves ``auto``; see :func:`fedtrain.device.resolve_device`).
        share: this process's part of a grid split over ``share.world`` processes: of every ``world``
            consecutive chunks it evaluates the ``share.rank``-th, then ``share.merge`` gives every process
            the group's values (:mod:`landscape.surface.distributed`); ``on_chunk`` follows every group.
            Each point is still evaluated in its own chunk, so the values are those of one process.

    Returns:
        The complete surface; its metadata adds the directions' kind, info and sha256, ``bn``,
        ``has_batchnorm``, ``batch_size``, ``points_per_pass``, ``method``, ``num_examples`` per split
        and ``device_used`` (:func:`fedtrain.device.device_record`).

    Raises:
        ConfigError: coordinates that do not match the directions, unknown splits, or a ``resume_from``
            of another grid.
    """
    coordinates = _checked_coordinates(directions, coordinates, data, points_per_pass)
    device = torch.device(device)
    evaluator = Evaluator(model, batch_size=batch_size, method=method, bn=bn, recalibration_inputs=recalibration_inputs,  # type: ignore[arg-type]
                          device=device)
    meta = {
        **(metadata or {}),
        "kind": directions.kind,
        "directions": directions.info,
        "directions_sha256": directions_sha256(directions),
        "bn": bn,
        "has_batchnorm": has_batchnorm(model),
        "batch_size": batch_size,
        "points_per_pass": points_per_pass,
        "method": method,
        "num_examples": {split: int(labels.shape[0]) for split, (_, labels) in data.items()},
        "device_used": device_record(device),
    }
    on_device = directions.to(device)
    data = {split: (inputs.to(device), labels.to(device)) for split, (inputs, labels) in data.items()}
    values, done = _starting_values(coordinates, list(data), resume_from)
    ys = coordinates[1] if len(coordinates) == 2 else None
    points = _grid(coordinates)
    flat_done = done.reshape(-1)
    chunks = [slice(start, min(start + points_per_pass, len(points))) for start in range(0, len(points), points_per_pass)]
    rank, world = (0, 1) if share is None else (share.rank, share.world)
    for first in range(0, len(chunks), world):
        group = chunks[first : first + world]
        if all(flat_done[chunk].all() for chunk in group):
            continue
        before = done.copy()
        if rank < len(group) and not flat_done[group[rank]].all():
            _evaluate_chunk(evaluator, [on_device.point(p) for p in points[group[rank]]], data, values, group[rank])
            flat_done[group[rank]] = True
        if share is not None:
            share.merge(values, done, before)
        if on_chunk is not None:
            on_chunk(Surface(coordinates[0], ys, {k: v.copy() for k, v in values.items()}, done.copy(), {**meta, "complete": bool(done.all())}))
    return Surface(coordinates[0], ys, values, done, {**meta, "complete": True})


def _checked_coordinates(
    directions: Directions, coordinates: Sequence[np.ndarray], data: Mapping[str, Any], points_per_pass: int
) -> list[np.ndarray]:
    """The coordinates as float64 arrays, after checking they, the data and the chunk size fit together."""
    coordinates = [np.asarray(c, dtype=np.float64) for c in coordinates]
    if len(coordinates) != directions.ndim:
        raise ConfigError(f"{directions.ndim}-D directions need {directions.ndim} coordinate arrays, got {len(coordinates)}.")
    if any(c.ndim != 1 or c.size == 0 or not np.isfinite(c).all() for c in coordinates):
        raise ConfigError("Each coordinate array must be a non-empty 1-D array of finite numbers.")
    if not data or any(split not in SPLITS for split in data):
        raise ConfigError(f"data must map 'train' and/or 'test' to (inputs, labels); got {sorted(data)}.")
    if points_per_pass < 1:
        raise ConfigError(f"points_per_pass must be >= 1, got {points_per_pass}.")
    return coordinates


def _starting_values(
    coordinates: Sequence[np.ndarray], splits: Sequence[str], resume_from: Surface | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Value arrays and done mask to fill in: all NaN and not done, or copies of a partial surface's."""
    keys = [value_key(s, q, e) for s in splits for q in QUANTITIES for e in (False, True)]
    if resume_from is None:
        shape = tuple(c.size for c in coordinates)
        return {k: np.full(shape, np.nan) for k in keys}, np.zeros(shape, dtype=bool)
    _check_resumable(resume_from, coordinates, keys)
    return {k: resume_from.values[k].copy() for k in keys}, resume_from.done.copy()


def _evaluate_chunk(
    evaluator: Evaluator,
    params: Sequence[Mapping[str, Tensor]],
    data: Mapping[str, tuple[Tensor, Tensor]],
    values: dict[str, np.ndarray],
    chunk: slice,
) -> None:
    """Evaluate one chunk's points on every split and write means and standard errors at ``chunk`` of ``values``.

    Every split's pass is queued before the one transfer of their statistics to the host.
    """
    rows = torch.stack([evaluator.statistics(params, inputs, labels) for inputs, labels in data.values()]).cpu().numpy()
    for (split, (_, labels)), split_rows in zip(data.items(), rows):
        stats = point_stats(split_rows, int(labels.shape[0]))
        for quantity, mean, stderr in (("loss", stats.loss, stats.loss_stderr), ("acc", stats.acc, stats.acc_stderr)):
            values[value_key(split, quantity)].reshape(-1)[chunk] = mean
            values[value_key(split, quantity, True)].reshape(-1)[chunk] = stderr


def _check_resumable(partial: Surface, coordinates: Sequence[np.ndarray], keys: Sequence[str]) -> None:
    same_grid = partial.ndim == len(coordinates) and all(
        a is not None and a.shape == b.shape and np.array_equal(a, b)
        for a, b in zip((partial.xcoordinates, partial.ycoordinates), coordinates)
    )
    if not same_grid or set(keys) - set(partial.values):
        raise ConfigError(
            "The partial surface to resume has another grid or other splits than this request. Resume with the "
            "same --range/--steps/--split, or start afresh without --resume."
        )
