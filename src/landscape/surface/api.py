"""From checkpoint files to a saved surface: load models and data, choose directions, resume, record provenance."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedtrain.checkpoint import Checkpoint, file_sha256, library_versions, load_checkpoint
from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.errors import CheckpointError, ConfigError
from fedtrain.io import json_roundtrip
from landscape.surface.directions import (
    Directions,
    directions_from_vectors,
    directions_sha256,
    interpolation_directions,
    plane_directions,
    random_directions,
)
from landscape.surface.grid import compute_surface, interpolation_coordinates, plane_coordinates, symmetric_coordinates
from landscape.surface.record import SPLITS, Surface, load_surface, save_surface

__all__ = ["DIRECTION_KINDS", "surface_for_checkpoint", "surfaces_for_checkpoints", "checkpoint_labels", "surface_path"]

DIRECTION_KINDS: tuple[str, ...] = ("random", "hessian")


def surface_path(out: str | os.PathLike[str]) -> Path:
    """``out`` itself when it ends in ``.npz``, else ``out/surface.npz``."""
    out = Path(out)
    return out if out.suffix == ".npz" else out / "surface.npz"


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


def _load_models(paths: Sequence[str | os.PathLike[str]], weights: str) -> list[tuple[Checkpoint, nn.Module]]:
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0]
    for other in loaded[1:]:
        if (other.model_name, other.model_kwargs) != (first.model_name, first.model_kwargs):
            raise CheckpointError(
                f"{other.path} holds model {other.model_name!r} {other.model_kwargs} but {first.path} holds "
                f"{first.model_name!r} {first.model_kwargs}: checkpoints of different architectures cannot share "
                "a line or plane. Compare checkpoints trained with the same --model and model options."
            )
    return [(c, c.build_model(weights)) for c in loaded]  # type: ignore[arg-type]


def _hessian_directions(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, ndim: int, seed: int) -> Directions:
    try:
        from landscape.hessian.analysis import hessian_eigenvectors
    except ImportError as err:
        raise ConfigError(
            "Hessian directions need landscape.hessian.hessian_eigenvectors, which this installation lacks. "
            "Use --directions random."
        ) from err
    eigenvalues, vectors = hessian_eigenvectors(model, inputs, labels, top_k=ndim, seed=seed)
    info = {"eigenvalues": [float(v) for v in eigenvalues], "seed": seed, "normalization": "unit eigenvectors",
            "num_hessian_examples": int(labels.shape[0])}
    return directions_from_vectors(_params(model), list(vectors)[:ndim], kind="hessian", info=info)


def surface_for_checkpoint(
    checkpoint: str | os.PathLike[str],
    *,
    directions: str = "random",
    interpolate: str | os.PathLike[str] | None = None,
    plane: Sequence[str | os.PathLike[str]] | None = None,
    range: float = 1.0,  # noqa: A002 - one name across API, CLI (--range) and JSON
    steps: int = 21,
    dims: int = 2,
    margin: float | None = None,
    splits: str | Sequence[str] = ("train",),
    num_examples: int | None = 2000,
    seed: int = 0,
    bn: str = "eval",
    weights: str = "auto",
    one_dim: str = "zero",
    batch_size: int = 64,
    points_per_pass: int = 8,
    method: str = "loop",
    data_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> Surface:
    """Compute (or finish) the loss surface of a checkpoint and save it as it goes.

    Three kinds of slice: ``directions="random"`` (filter-normalised Gaussian, Li et al. 2018) or
    ``"hessian"`` (top eigenvectors of the train-subset Hessian, unit norm), a grid of ``steps``
    points per axis over ``[-range, range]``; ``interpolate=B``: the line from this checkpoint
    (t=0) to B (t=1), ``steps`` points with about ``margin`` (default 0.5) beyond each end;
    ``plane=(B, C)``: the plane through the three models (Garipov et al. 2018), ``steps`` x ``steps``
    over their bounding box widened by ``margin`` (default 0.2).

    Args:
        checkpoint: the checkpoint at the centre (or the origin of a line or plane).
        directions: ``"random"`` or ``"hessian"`` (ignored for lines and planes).
        interpolate: the end checkpoint of a 1-D interpolation.
        plane: two more checkpoints spanning a plane with ``checkpoint``.
        range: half-width of the grid for random/Hessian directions.
        steps: points per axis (odd counts put the centre on the grid).
        dims: 1 (a curve) or 2 (a surface) for random/Hessian directions.
        margin: extrapolation margin for lines and planes.
        splits: ``"train"``, ``"test"`` or both.
        num_examples: samples per split (a fixed seeded subset, the same as every analysis); None = all.
        seed: seed of the directions (or Lanczos start) and of the sample subset.
        bn: ``"eval"`` (frozen BatchNorm statistics) or ``"recalibrate"`` (recomputed at every point).
        weights: ``"auto"`` (SWA model when present), ``"swa"`` or ``"global"``.
        one_dim: random directions' policy for 1-D tensors: ``"zero"``, ``"keep"`` or ``"filter"``.
        batch_size: samples per forward pass.
        points_per_pass: grid points evaluated per pass over the data (also the unit of saving).
        method: ``"loop"`` or ``"vmap"``.
        data_dir: where to look for the dataset first (default: the checkpoint's).
        out: ``surface.npz`` path, or a folder to write ``surface.npz`` in; saved after every chunk.
        resume: finish the partial surface at ``out`` (same request required).

    Returns:
        The complete surface; metadata records checkpoints and sha256, model, dataset, seeds, BN mode,
        samples, the grid request and (for lines and planes) the models' coordinates.

    Raises:
        ConfigError: bad settings, ``resume`` without a matching partial file, or an unfinished file
            at ``out`` without ``resume``.
        CheckpointError: unreadable checkpoints or checkpoints of different architectures.
    """
    splits = (splits,) if isinstance(splits, str) else tuple(dict.fromkeys(splits))
    if not splits or any(s not in SPLITS for s in splits):
        raise ConfigError(f"splits must be 'train' and/or 'test', got {splits!r}.")
    if interpolate is not None and plane is not None:
        raise ConfigError("Choose one of interpolate (a line through two checkpoints) and plane (three checkpoints).")
    if plane is not None and len(plane) != 2:
        raise ConfigError(f"A plane needs two more checkpoints besides the first, got {len(plane)}.")
    if interpolate is None and plane is None and directions not in DIRECTION_KINDS:
        raise ConfigError(f"directions must be one of {', '.join(DIRECTION_KINDS)}, got {directions!r}.")
    paths = [Path(checkpoint), *([Path(interpolate)] if interpolate is not None else []), *[Path(p) for p in plane or ()]]
    models = _load_models(paths, weights)
    ckpt, model = models[0]
    dataset = load_dataset(ckpt.dataset, data_dir if data_dir is not None else ckpt.data_dir)
    data = {split: evaluation_tensors(dataset, split, num_examples, seed) for split in splits}
    needs_train = bn == "recalibrate" or (interpolate is None and plane is None and directions == "hessian")
    train = data.get("train") or (evaluation_tensors(dataset, "train", num_examples, seed) if needs_train else None)

    if interpolate is not None:
        margin = 0.5 if margin is None else margin
        kind, coordinates = "interpolation", [interpolation_coordinates(steps, margin)]
    elif plane is not None:
        margin = 0.2 if margin is None else margin
        kind = "plane"
    else:
        if dims not in (1, 2):
            raise ConfigError(f"dims must be 1 or 2, got {dims}.")
        kind = directions
        coordinates = [symmetric_coordinates(range, steps)] * dims
    request = {
        "kind": kind, "checkpoints_sha256": [file_sha256(p) for p in paths], "weights": weights,
        "range": range if kind in DIRECTION_KINDS else None, "steps": steps, "dims": dims if kind in DIRECTION_KINDS else None,
        "margin": margin, "splits": list(splits), "num_examples": num_examples, "seed": seed, "bn": bn,
        "one_dim": one_dim if kind == "random" else None, "batch_size": batch_size,
        "points_per_pass": points_per_pass, "method": method,
    }
    target = surface_path(out) if out is not None else None
    partial = _partial_to_resume(target, request, resume)

    params = [_params(m) for _, m in models]
    if kind == "interpolation":
        dirs = interpolation_directions(params[0], params[1])
    elif kind == "plane":
        dirs = plane_directions(*params)
        coordinates = list(plane_coordinates(dirs.info["model_coordinates"], steps, margin))
    elif kind == "hessian":
        dirs = _hessian_directions(model, *train, ndim=dims, seed=seed)
    else:
        dirs = random_directions(params[0], ndim=dims, seed=seed, one_dim=one_dim)  # type: ignore[arg-type]
    if partial is not None and partial.metadata.get("directions_sha256") != directions_sha256(dirs):
        raise ConfigError(
            f"The directions recomputed for resuming differ from those of the partial surface {target} "
            "(different library versions or non-deterministic Hessian directions). Start afresh without --resume."
        )
    metadata = {
        "request": request,
        "checkpoints": [
            {"path": str(c.path), "sha256": sha, "weights": c.resolve_weights(weights), "round": c.round}  # type: ignore[arg-type]
            for (c, _), sha in zip(models, request["checkpoints_sha256"])
        ],
        "model": {"name": ckpt.model_name, "kwargs": ckpt.model_kwargs},
        "dataset": dataset.describe(),
        "seeds": {"directions": seed, "subset": seed},
        "splits": list(splits),
        "versions": library_versions(),
    }
    on_chunk = (lambda s: save_surface(s, target)) if target is not None else None
    surface = compute_surface(
        model, dirs, coordinates, data, bn=bn, recalibration_inputs=None if train is None else train[0], batch_size=batch_size,
        points_per_pass=points_per_pass, method=method, resume_from=partial, on_chunk=on_chunk, metadata=metadata,
    )
    if target is not None:
        save_surface(surface, target)
    return surface


def _partial_to_resume(target: Path | None, request: dict[str, Any], resume: bool) -> Surface | None:
    """The partial surface to finish, after checking it answers the same request."""
    if target is None:
        if resume:
            raise ConfigError("resume needs the output path (--out) of the partial surface to finish.")
        return None
    if not target.exists():
        if resume:
            raise ConfigError(f"Nothing to resume: {target} does not exist. Run without --resume first.")
        return None
    existing = load_surface(target)
    if not resume:
        if not existing.complete:
            raise ConfigError(
                f"{target} holds an unfinished surface ({int(existing.done.sum())}/{existing.done.size} points). "
                "Pass --resume to finish it, or delete it (or choose another --out) to start afresh."
            )
        return None
    stored = existing.metadata.get("request", {})
    differing = sorted(k for k in request if stored.get(k) != json_roundtrip(request[k]))
    if differing:
        raise ConfigError(
            f"Cannot resume {target}: it was computed with different settings ({', '.join(differing)}). Resume with "
            "the original settings, or start afresh without --resume."
        )
    return existing



def checkpoint_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Short unique labels for checkpoints: file stems, or ``parent/stem`` when stems repeat."""
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{p.parent.name}/{p.stem}" for p in paths]


def surfaces_for_checkpoints(
    checkpoints: Sequence[str | os.PathLike[str]], *, out: str | os.PathLike[str], **options: Any
) -> dict[str, tuple[Path, Surface]]:
    """:func:`surface_for_checkpoint` for each checkpoint (same directions seed, grid and data).

    One checkpoint writes ``out/surface.npz``; several write ``out/<label>/surface.npz``.

    Args:
        checkpoints: checkpoint files (one, when ``interpolate`` or ``plane`` is given).
        out: output folder.
        **options: passed to :func:`surface_for_checkpoint`.

    Returns:
        label -> (surface file, surface).

    Raises:
        ConfigError: no checkpoint, or several with ``interpolate``/``plane``.
    """
    if not checkpoints:
        raise ConfigError("Pass at least one checkpoint (or re-plot saved surfaces with --from).")
    if len(checkpoints) > 1 and (options.get("interpolate") is not None or options.get("plane") is not None):
        raise ConfigError("--interpolate and --plane take exactly one first checkpoint; the others are given with the option.")
    labels = checkpoint_labels(checkpoints)
    results = {}
    for label, path in zip(labels, checkpoints):
        target = Path(out) / "surface.npz" if len(checkpoints) == 1 else Path(out) / label.replace("/", "_") / "surface.npz"
        results[label] = (target, surface_for_checkpoint(path, out=target, **options))
    return results
