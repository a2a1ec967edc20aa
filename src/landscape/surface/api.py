"""From checkpoint files to a saved surface: the slice asked for, its models and data, directions, resume and provenance.

:func:`surface_for_checkpoint` reads its settings from a :class:`~landscape.settings.SurfaceSettings`
record and its inputs (the checkpoints of a line or plane, the data folder, the output and whether to
resume) from keywords. The numerics live in :mod:`~landscape.surface.directions` and
:mod:`~landscape.surface.grid`; this module knows the files: it names the checkpoints in its errors and
records their hashes, so a partial ``surface.npz`` is resumed only by the request that started it.

``settings.device`` is resolved once here. Checkpoints are read and directions made on the CPU (random
directions come from a CPU generator, so they are the same on every machine); the grid is evaluated on
the resolved device (Hessian directions are computed there too), and the surface is saved as NumPy.
A partial surface is finished only on the same kind of device (:mod:`landscape.surface.resume`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedtrain.checkpoint import Checkpoint, file_sha256, library_versions
from fedtrain.data import ImageDataset, evaluation_tensors
from fedtrain.device import resolve_device, to_cpu
from fedtrain.errors import CheckpointError, ConfigError
from fedtrain.lock import DirectoryLock, file_lock
from fedtrain.outpaths import inside, unique_names
from fedtrain.foreign import ForeignCheckpoint, ForeignSpec, TensorData, dataset_of, open_checkpoint
from fedtrain.progress import Progress, ProgressCallback, report
from landscape.hessian.analysis import hessian_eigenvectors
from landscape.settings import DIRECTION_KINDS, SurfaceSettings
from landscape.surface.directions import (
    Directions,
    directions_from_vectors,
    interpolation_directions,
    plane_directions,
    random_directions,
)
from landscape.surface.grid import ChunkShare, compute_surface, interpolation_coordinates, plane_coordinates, symmetric_coordinates
from landscape.surface.passes import PassPlan, plan_passes
from landscape.surface.record import Surface, save_surface
from landscape.surface.resume import (
    check_same_device,
    check_same_directions,
    check_same_request,
    device_runs,
    partial_to_resume,
    stored_passes,
)

__all__ = [
    "SurfaceSlice",
    "surface_for_checkpoint",
    "surfaces_for_checkpoints",
    "slice_for",
    "resume_request",
    "checkpoint_labels",
    "surface_path",
]

Batch = tuple[torch.Tensor, torch.Tensor]
LINE_MARGIN = 0.5  # default extrapolation beyond the two models of a line
PLANE_MARGIN = 0.2  # default widening of the three models' bounding box in a plane


@dataclass(frozen=True)
class SurfaceSlice:
    """Which slice of parameter space a request draws, and through which checkpoints.

    Attributes:
        kind: ``"random"`` or ``"hessian"`` (axes around one checkpoint), ``"interpolation"`` or ``"plane"``.
        paths: the checkpoints, the origin first.
        margin: the margin in effect: resolved to its default for a line or plane, as given otherwise.
    """

    kind: str
    paths: tuple[Path, ...]
    margin: float | None

    @property
    def through_models(self) -> bool:
        """Whether the axes join checkpoints (a line or plane) rather than start from one."""
        return self.kind not in DIRECTION_KINDS


def surface_path(out: str | os.PathLike[str]) -> Path:
    """``out`` itself when it ends in ``.npz``, else ``out/surface.npz``."""
    out = Path(out)
    return out if out.suffix == ".npz" else out / "surface.npz"


def slice_for(
    checkpoint: str | os.PathLike[str],
    settings: SurfaceSettings,
    *,
    interpolate: str | os.PathLike[str] | None = None,
    plane: Sequence[str | os.PathLike[str]] | None = None,
) -> SurfaceSlice:
    """The slice of a request: a line with ``interpolate``, a plane with ``plane``, else ``settings.directions``.

    Raises:
        ConfigError: both ``interpolate`` and ``plane``, or a plane without exactly two more checkpoints.
    """
    if interpolate is not None and plane is not None:
        raise ConfigError("Choose one of interpolate (a line through two checkpoints) and plane (three checkpoints).")
    if plane is not None and len(plane) != 2:
        raise ConfigError(f"A plane needs two more checkpoints besides the first, got {len(plane)}.")
    origin = Path(checkpoint)
    if interpolate is not None:
        margin = LINE_MARGIN if settings.margin is None else settings.margin
        return SurfaceSlice("interpolation", (origin, Path(interpolate)), margin)
    if plane is not None:
        margin = PLANE_MARGIN if settings.margin is None else settings.margin
        return SurfaceSlice("plane", (origin, *(Path(p) for p in plane)), margin)
    return SurfaceSlice(settings.directions, (origin,), settings.margin)


def resume_request(
    settings: SurfaceSettings, slice_: SurfaceSlice, checkpoints_sha256: Sequence[str], passes: PassPlan
) -> dict[str, Any]:
    """What a partial ``surface.npz`` must have been asked for to be resumed: its ``metadata["request"]``.

    Settings that do not shape this kind of slice are ``None`` (``range`` and ``dims`` for a line or
    plane, ``one_dim`` for anything but random directions). ``batch_size`` and ``points_per_pass`` are
    those in effect (``passes``: fixed, the CPU defaults or chosen from GPU memory), never ``None``.
    Files written since format 1 hold exactly these keys and values; changing either makes their
    partial grids unresumable. The device is not part of the request (see the module docstring).
    """
    axes_around_origin = not slice_.through_models
    return {
        "kind": slice_.kind,
        "checkpoints_sha256": list(checkpoints_sha256),
        "weights": settings.weights,
        "range": settings.range if axes_around_origin else None,
        "steps": settings.steps,
        "dims": settings.dims if axes_around_origin else None,
        "margin": slice_.margin,
        "splits": list(settings.splits),
        "num_examples": settings.num_examples,
        "seed": settings.seed,
        "bn": settings.bn,
        "one_dim": settings.one_dim if slice_.kind == "random" else None,
        "batch_size": passes.batch_size,
        "points_per_pass": passes.points_per_pass,
        "method": settings.method,
    }


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


def _load_models(paths: Sequence[Path], weights: str, foreign: ForeignSpec | None = None,
                 data_dir: str | os.PathLike[str] | None = None) -> list[tuple[Checkpoint, nn.Module]]:
    loaded = [open_checkpoint(p, foreign, data_dir) for p in paths]
    first = loaded[0]
    for other in loaded[1:]:
        if (other.model_name, other.model_kwargs) != (first.model_name, first.model_kwargs):
            raise CheckpointError(
                f"{other.path} holds model {other.model_name!r} {other.model_kwargs} but {first.path} holds "
                f"{first.model_name!r} {first.model_kwargs}: checkpoints of different architectures cannot share "
                "a line or plane. Compare checkpoints trained with the same --model and model options."
            )
    return [(c, c.build_model(weights)) for c in loaded]  # type: ignore[arg-type]


def _evaluation_data(
    checkpoint: Checkpoint, settings: SurfaceSettings, data_dir: str | os.PathLike[str] | None, *, needs_train: bool
) -> tuple[ImageDataset | TensorData, dict[str, Batch], Batch | None]:
    """The dataset, the evaluated subset of each split, and the train subset when BN or Hessian needs it."""
    dataset = dataset_of(checkpoint, data_dir)
    data = {split: evaluation_tensors(dataset, split, settings.num_examples, settings.seed) for split in settings.splits}
    train = data.get("train")
    if train is None and needs_train:
        train = evaluation_tensors(dataset, "train", settings.num_examples, settings.seed)
    return dataset, data, train


def _hessian_directions(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, ndim: int, seed: int, device: torch.device
) -> Directions:
    """Top Hessian eigenvectors of the train subset, computed on ``device`` (the model is not moved), kept on the CPU."""
    eigenvalues, vectors = hessian_eigenvectors(model, inputs, labels, top_k=ndim, seed=seed, device=device)
    info = {"eigenvalues": [float(v) for v in eigenvalues], "seed": seed, "normalization": "unit eigenvectors",
            "num_hessian_examples": int(labels.shape[0])}
    return directions_from_vectors(_params(model), [to_cpu(v) for v in vectors][:ndim], kind="hessian", info=info)


def _directions(
    slice_: SurfaceSlice,
    models: Sequence[tuple[Checkpoint, nn.Module]],
    settings: SurfaceSettings,
    train: Batch | None,
    device: torch.device,
) -> Directions:
    """The axes of the slice, on the CPU; errors of a line or plane name the checkpoints they come from."""
    params = [_params(model) for _, model in models]
    if slice_.kind == "hessian":
        return _hessian_directions(models[0][1], *train, ndim=settings.dims, seed=settings.seed, device=device)  # type: ignore[misc]
    if slice_.kind == "random":
        return random_directions(params[0], ndim=settings.dims, seed=settings.seed, one_dim=settings.one_dim)  # type: ignore[arg-type]
    through = interpolation_directions if slice_.kind == "interpolation" else plane_directions
    try:
        return through(*params)
    except ConfigError as err:  # the numerics name models A, B, C: say which files they are
        names = ", ".join(f"{letter} = {c.path}" for letter, (c, _) in zip("ABC", models))
        raise CheckpointError(f"Cannot draw the {slice_.kind} through the checkpoints {names}: {err}") from err


def _coordinates(slice_: SurfaceSlice, settings: SurfaceSettings, directions: Directions) -> list[np.ndarray]:
    """One coordinate array per axis: symmetric around the origin, or around the models of a line or plane."""
    if slice_.kind == "interpolation":
        return [interpolation_coordinates(settings.steps, slice_.margin)]  # type: ignore[arg-type]
    if slice_.kind == "plane":
        return list(plane_coordinates(directions.info["model_coordinates"], settings.steps, slice_.margin))  # type: ignore[arg-type]
    return [symmetric_coordinates(settings.range, settings.steps)] * settings.dims


def _ndim(slice_: SurfaceSlice, settings: SurfaceSettings) -> int:
    """Axes of the slice: one for a line, two for a plane, ``dims`` around a checkpoint."""
    return 1 if slice_.kind == "interpolation" else 2 if slice_.kind == "plane" else settings.dims


def _nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _passes(
    settings: SurfaceSettings,
    slice_: SurfaceSlice,
    model: nn.Module,
    data: Mapping[str, Batch],
    train: Batch | None,
    partial: Surface | None,
    device: torch.device,
) -> PassPlan:
    """Points per pass and batch size: fixed, reused from the partial file being resumed, or planned for ``device``."""
    stored = stored_passes(partial, settings.batch_size, settings.points_per_pass)
    if stored is not None:  # a choice made from memory (or a default) is reproduced
        return stored
    ndim = _ndim(slice_, settings)
    inputs = [x for x, _ in data.values()] + ([] if train is None or "train" in data else [train[0]])
    resident = _nbytes(inputs) + (2 + ndim) * _nbytes(list(model.parameters()))  # data; model copy, origin, axes
    first = inputs[0]
    return plan_passes(model, first[0], device, num_examples=int(first.shape[0]), num_points=settings.steps**ndim,
                       resident_bytes=resident, batch_size=settings.batch_size, points_per_pass=settings.points_per_pass)


def _provenance(
    request: Mapping[str, Any],
    models: Sequence[tuple[Checkpoint, nn.Module]],
    dataset: ImageDataset | TensorData,
    settings: SurfaceSettings,
    passes: PassPlan,
    device_runs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The metadata that ties a surface to its request, checkpoints (with sha256), model, data, devices and versions."""
    first = models[0][0]
    return {
        "request": dict(request),
        "checkpoints": [
            {"path": str(c.path), "sha256": sha, "weights": c.resolve_weights(settings.weights), "round": c.round}  # type: ignore[arg-type]
            for (c, _), sha in zip(models, request["checkpoints_sha256"])
        ],
        "model": {"name": first.model_name, "kwargs": first.model_kwargs},
        "dataset": dataset.describe(),
        "seeds": {"directions": settings.seed, "subset": settings.seed},
        "splits": list(settings.splits),
        "versions": library_versions(),
        "pass_plan": passes.to_dict(),
        "device_runs": device_runs,
        **({"foreign": first.provenance()} if isinstance(first, ForeignCheckpoint) else {}),
    }


def surface_for_checkpoint(
    checkpoint: str | os.PathLike[str],
    settings: SurfaceSettings = SurfaceSettings(),
    *,
    interpolate: str | os.PathLike[str] | None = None,
    plane: Sequence[str | os.PathLike[str]] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    foreign: ForeignSpec | None = None,
    share: ChunkShare | None = None,
) -> Surface:
    """Compute (or finish) the loss surface of a checkpoint and save it as it goes.

    Three kinds of slice: ``settings.directions`` ``"random"`` (filter-normalised Gaussian, Li et al.
    2018) or ``"hessian"`` (top eigenvectors of the train-subset Hessian, unit norm), a grid of
    ``steps`` points per axis over ``[-range, range]``; ``interpolate=B``: the line from this checkpoint
    (t=0) to B (t=1), ``steps`` points with about ``margin`` (default 0.5) beyond each end;
    ``plane=(B, C)``: the plane through the three models (Garipov et al. 2018), ``steps`` x ``steps``
    over their bounding box widened by ``margin`` (default 0.2).

    Args:
        checkpoint: the checkpoint at the centre (or the origin of a line or plane).
        settings: how to sample the surface (grid, splits, samples, seed, BN mode, evaluation, device;
            batch size and points per pass left open are the CPU defaults or chosen from free GPU memory).
        interpolate: the end checkpoint of a 1-D interpolation.
        plane: two more checkpoints spanning a plane with ``checkpoint``.
        data_dir: where to look for the dataset first (default: the checkpoint's).
        out: ``surface.npz`` path, or a folder to write ``surface.npz`` in; saved after every chunk.
        resume: finish the partial surface at ``out`` (same request required).
        progress: called with a ``"surface"`` :class:`~fedtrain.progress.Progress` in ``"grid points"`` before
            the first pass (done: the points a resumed file has) and after every pass (``detail`` ``"pass k/n"``).
        foreign: read every checkpoint as a plain ``state_dict`` of this model and data
            (:func:`fedtrain.foreign.load_foreign`); recorded as ``metadata["foreign"]``.
        share: this process's part of a grid split over several (:mod:`landscape.surface.distributed`,
            which gives ``out`` to one of them only, and holds the output's lock itself).

    Returns:
        The complete surface (NumPy arrays, whatever the device); metadata records checkpoints and
        sha256, model, dataset, seeds, BN mode, samples, the grid request (with the batch size and
        points per pass in effect), ``pass_plan`` (how they were chosen), ``device_used``,
        ``device_runs`` and (for lines and planes) the models' coordinates.

    Raises:
        ConfigError: ``interpolate`` with ``plane``, ``resume`` without a matching partial file (or on
            another kind of device), an unfinished file at ``out`` without ``resume``, a device this
            machine does not have, or too little free GPU memory.
        CheckpointError: unreadable checkpoints, checkpoints of different architectures, or three on one line.
    """
    # a shared computation's caller holds the output's lock for all its processes
    with _output_lock(out) if share is None else contextlib.nullcontext():
        return _surface(checkpoint, settings, resolve_device(settings.device), interpolate=interpolate, plane=plane,
                        data_dir=data_dir, out=out, resume=resume, progress=progress, foreign=foreign, share=share)


def _output_lock(out: str | os.PathLike[str] | None) -> contextlib.AbstractContextManager[Any]:
    """The lock a surface's writer holds: its folder's, or for an ``.npz`` path that one file's (two files may be written side by side)."""
    if out is None:
        return contextlib.nullcontext()
    target = surface_path(out)
    return DirectoryLock(target.parent) if target != Path(out) else file_lock(target)


def _surface(
    checkpoint: str | os.PathLike[str],
    settings: SurfaceSettings,
    device: torch.device,
    *,
    interpolate: str | os.PathLike[str] | None,
    plane: Sequence[str | os.PathLike[str]] | None,
    data_dir: str | os.PathLike[str] | None,
    out: str | os.PathLike[str] | None,
    resume: bool,
    progress: ProgressCallback | None = None,
    foreign: ForeignSpec | None = None,
    share: ChunkShare | None = None,
) -> Surface:
    """:func:`surface_for_checkpoint` on a resolved device."""
    slice_ = slice_for(checkpoint, settings, interpolate=interpolate, plane=plane)
    settings.check_grid(_ndim(slice_, settings))  # a plane has two axes whatever dims says; refused before any file is read
    models = _load_models(slice_.paths, settings.weights, foreign, data_dir)
    needs_train = settings.bn == "recalibrate" or slice_.kind == "hessian"
    dataset, data, train = _evaluation_data(models[0][0], settings, data_dir, needs_train=needs_train)
    target = surface_path(out) if out is not None else None
    partial = partial_to_resume(target, resume)
    check_same_device(partial, device, target)
    passes = _passes(settings, slice_, models[0][1], data, train, partial, device)
    request = resume_request(settings, slice_, [file_sha256(p) for p in slice_.paths], passes)
    check_same_request(partial, request, target)
    directions = _directions(slice_, models, settings, train, device)
    check_same_directions(partial, directions, target)
    coordinates = _coordinates(slice_, settings, directions)
    on_chunk = _chunk_listener(target, progress, math.prod(len(c) for c in coordinates), passes.points_per_pass, partial)
    surface = compute_surface(
        models[0][1], directions, coordinates, data,
        bn=settings.bn, recalibration_inputs=None if train is None else train[0], batch_size=passes.batch_size,
        points_per_pass=passes.points_per_pass, method=settings.method, resume_from=partial,
        on_chunk=on_chunk,
        metadata=_provenance(request, models, dataset, settings, passes, device_runs(partial, device)), device=device,
        share=share,
    )
    if target is not None:
        save_surface(surface, target)
    return surface


def _chunk_listener(target: Path | None, progress: ProgressCallback | None, num_points: int, points_per_pass: int,
                    partial: Surface | None) -> Callable[[Surface], None] | None:
    """What follows every pass: the partial surface saved to ``target``, then a progress event; ``None`` if neither."""
    if target is None and progress is None:
        return None
    passes = math.ceil(num_points / points_per_pass)

    def event(done: int) -> Progress:
        return Progress("surface", done, num_points, "grid points", detail=f"pass {math.ceil(done / points_per_pass)}/{passes}",
                        hint="Shorter: fewer --steps (points grow as steps^2) or --samples (each point is one pass over them).")

    report(progress, event(0 if partial is None else int(np.count_nonzero(partial.done))))

    def after_pass(surface: Surface) -> None:
        if target is not None:
            save_surface(surface, target)
        report(progress, event(int(np.count_nonzero(surface.done))))

    return after_pass


def checkpoint_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Short unique labels for checkpoints: file stems, or ``parent/stem`` when stems repeat."""
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{p.parent.name}/{p.stem}" for p in paths]


def surfaces_for_checkpoints(
    checkpoints: Sequence[str | os.PathLike[str]],
    settings: SurfaceSettings,
    *,
    out: str | os.PathLike[str],
    interpolate: str | os.PathLike[str] | None = None,
    plane: Sequence[str | os.PathLike[str]] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    foreign: ForeignSpec | None = None,
    surface_fn: Callable[..., Surface] | None = None,
) -> dict[str, tuple[Path, Surface]]:
    """:func:`surface_for_checkpoint` for each checkpoint (same directions seed, grid and data).

    One checkpoint writes ``out/surface.npz``; several write ``out/<label>/surface.npz``.

    Args:
        checkpoints: checkpoint files (one, when ``interpolate`` or ``plane`` is given).
        settings: how to sample every surface.
        out: output folder.
        interpolate: the end checkpoint of a line from the one checkpoint.
        plane: two more checkpoints spanning a plane with the one checkpoint.
        data_dir: where to look for the dataset first (default: each checkpoint's).
        resume: finish the partial surfaces under ``out``.
        progress: each surface's progress (see :func:`surface_for_checkpoint`), its label leading ``detail`` when several.
        foreign: read the checkpoints as plain ``state_dict`` files of this model and data.
        surface_fn: computes one surface, with ``_surface``'s arguments (default: in this process;
            :func:`landscape.surface.distributed.surfaces_for_checkpoints_parallel` passes one that spawns ranks).

    Returns:
        label -> (surface file, surface).

    Raises:
        ConfigError: no checkpoint, or several with ``interpolate``/``plane``, or a device this machine does not have.
    """
    if not checkpoints:
        raise ConfigError("Pass at least one checkpoint (or re-plot saved surfaces with --from).")
    if len(checkpoints) > 1 and (interpolate is not None or plane is not None):
        raise ConfigError("--interpolate and --plane take exactly one first checkpoint; the others are given with the option.")
    labels = checkpoint_labels(checkpoints)
    device = resolve_device(settings.device)
    # labels come from file names ("...pt" gives ".."): each becomes one safe folder name inside out
    folders = [[]] if len(checkpoints) == 1 else [[name] for name in unique_names(labels)]
    results = {}
    with DirectoryLock(out):
        for label, path, folder in zip(labels, checkpoints, folders):
            target = inside(out, *folder, "surface.npz")
            labelled = progress if progress is None or len(checkpoints) == 1 else _labelled(progress, label)
            surface = (surface_fn or _surface)(path, settings, device, interpolate=interpolate, plane=plane, data_dir=data_dir,
                                               out=target, resume=resume, progress=labelled, foreign=foreign)
            results[label] = (target, surface)
    return results


def _labelled(progress: ProgressCallback, label: str) -> ProgressCallback:
    """``progress`` with ``label`` leading each event's detail."""
    return lambda event: progress(replace(event, detail=f"{label} {event.detail}"))
