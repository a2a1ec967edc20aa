"""Loss surfaces split over processes: each rank evaluates every ``N``-th chunk of grid points, one rank writes.

The grid is evaluated in the same chunks of ``points_per_pass`` points as in one process
(:func:`~landscape.surface.grid.compute_surface`); of every ``N`` consecutive chunks rank ``r`` evaluates the
``r``-th, then one all-reduce gives every rank the group's values (each point comes from exactly one rank
and the others add exact zeros), so the surface is bit-identical to the one-process surface. The
directions are computed on every rank from the same seed (Hessian directions: each rank runs the same
Lanczos on all the samples). Rank 0 alone writes ``surface.npz`` (after every group, so a partial file
is resumed by ``--nproc 1`` or a later parallel run) and returns the surface. Processes are spawned by
:func:`landscape.hessian.distributed.run_ranks` (gloo on CPUs, NCCL on GPUs, rank ``r`` on ``cuda:r``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from fedtrain.device import resolve_device
from fedtrain.errors import ConfigError
from fedtrain.lock import DirectoryLock
from landscape.hessian.distributed import run_ranks
from landscape.settings import SurfaceSettings
from landscape.surface.api import surface_for_checkpoint, surface_path, surfaces_for_checkpoints
from landscape.surface.record import Surface

__all__ = ["AllReduceShare", "surface_for_checkpoint_parallel", "surfaces_for_checkpoints_parallel"]


@dataclass(frozen=True)
class AllReduceShare:
    """Rank ``rank`` of ``world`` in the default process group; :meth:`merge` is one all-reduce per value array."""

    rank: int
    world: int

    def merge(self, values: dict[str, np.ndarray], done: np.ndarray, before: np.ndarray) -> None:
        """Every rank's newly evaluated points into every rank's ``values`` and ``done`` (collective, in place)."""
        new_here = done & ~before
        flags = torch.from_numpy(new_here.astype(np.float64))
        dist.all_reduce(flags)
        new_anywhere = flags.numpy() > 0
        for key in sorted(values):  # the same order on every rank
            mine = torch.from_numpy(np.where(new_here, values[key], 0.0))
            dist.all_reduce(mine)
            values[key][new_anywhere] = mine.numpy()[new_anywhere]
        done |= new_anywhere


def _surface_rank(rank: int, world: int, checkpoint: str, settings: SurfaceSettings, options: dict[str, Any]) -> Surface:
    """Rank ``rank``'s share of the grid; only rank 0 has the output path (and its lock) and resumes from it."""
    if settings.device.startswith("cuda"):
        settings = replace(settings, device=f"cuda:{rank % torch.cuda.device_count()}")
    if rank != 0:
        options = {**options, "out": None, "resume": False}
    return surface_for_checkpoint(checkpoint, settings, share=AllReduceShare(rank, world), **options)


def surface_for_checkpoint_parallel(
    checkpoint: str | os.PathLike[str],
    settings: SurfaceSettings = SurfaceSettings(),
    *,
    nproc: int = 1,
    interpolate: str | os.PathLike[str] | None = None,
    plane: Sequence[str | os.PathLike[str]] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    threads: int | None = None,
    **options: Any,
) -> Surface:
    """:func:`~landscape.surface.api.surface_for_checkpoint` with the grid's chunks split over ``nproc`` processes.

    With ``nproc == 1`` it is that function (``options``: ``progress``, ``foreign``). With more, the
    surface is bit-identical to the one-process surface (see the module docstring) and written by one rank.

    Raises:
        ConfigError: ``nproc`` below 1, more ranks than GPUs, GPU ranks without a fixed ``points_per_pass`` and
            ``batch_size`` (each rank would plan its own from its free memory), a progress callback or ``resume``
            with ``nproc > 1``; and what :func:`~landscape.surface.api.surface_for_checkpoint` raises.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}.")
    if nproc == 1:
        return surface_for_checkpoint(checkpoint, settings, interpolate=interpolate, plane=plane, data_dir=data_dir,
                                      out=out, resume=resume, **options)
    if options.get("progress") is not None:
        raise ConfigError("Live progress needs --nproc 1 (the ranks report nothing until the grid is done).")
    if resume:  # the ranks must skip the same chunks, and only rank 0 reads the partial file
        raise ConfigError("--resume finishes a partial surface with --nproc 1; a parallel run starts a surface afresh.")
    device = resolve_device(settings.device)  # before anything is spawned
    if device.type == "cuda":
        if torch.cuda.device_count() < nproc:
            raise ConfigError(f"--nproc {nproc} puts one rank on each GPU, and this machine has {torch.cuda.device_count()}.")
        if settings.points_per_pass is None or settings.batch_size is None:
            raise ConfigError("--nproc > 1 on GPUs needs --points-per-pass and --batch-size: every rank must cut the grid the same way.")
    settings = replace(settings, device="cpu" if device.type == "cpu" else "cuda")
    args = {"interpolate": None if interpolate is None else str(interpolate), "plane": None if plane is None else [str(p) for p in plane],
            "data_dir": None if data_dir is None else str(data_dir), "out": None if out is None else str(out), "resume": resume,
            **options}
    # the ranks are other processes: this one holds the output folder's lock for them (rank 0 takes none)
    with DirectoryLock(surface_path(out).parent) if out is not None else contextlib.nullcontext():
        return run_ranks(_surface_rank, nproc, str(checkpoint), settings, args, device=device, threads=threads)


def surfaces_for_checkpoints_parallel(
    checkpoints: Sequence[str | os.PathLike[str]], settings: SurfaceSettings, *, nproc: int = 1, out: str | os.PathLike[str],
    **options: Any,
) -> dict[str, tuple[Any, Surface]]:
    """:func:`~landscape.surface.api.surfaces_for_checkpoints` (same arguments), each surface's grid split over ``nproc`` processes.

    Raises:
        ConfigError: as :func:`surface_for_checkpoint_parallel` and
            :func:`~landscape.surface.api.surfaces_for_checkpoints`.
    """
    if nproc == 1:
        return surfaces_for_checkpoints(checkpoints, settings, out=out, **options)

    def parallel(path: str | os.PathLike[str], settings: SurfaceSettings, device: torch.device, **kwargs: Any) -> Surface:
        return surface_for_checkpoint_parallel(path, settings, nproc=nproc, **kwargs)

    return surfaces_for_checkpoints(checkpoints, settings, out=out, surface_fn=parallel, **options)
