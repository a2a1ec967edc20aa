"""Resuming a partial ``surface.npz``: which file, the same request, device kind and directions, and who computed it.

A partial surface is finished only by the request that started it (:func:`check_same_request`), along
the very same directions (:func:`check_same_directions`), and on the same kind of device
(:func:`check_same_device`): the CPU, or a GPU of the same model (another index, ``cuda:1`` for
``cuda:0``, is fine). A resume on another kind is refused with a message naming both and how to go on:
float32 kernels round differently on a CPU and on each GPU model, so one grid would mix two roundings
(about 1e-6 relative apart) and the bit-identical resume would be lost. Files written before devices
were recorded were computed on the CPU. Every run that computed points of a surface is listed in its
``metadata["device_runs"]`` (:func:`device_runs`). Batch size and points per pass the user left open
are taken from the file (:func:`stored_passes`), so a choice made from free GPU memory is reproduced.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fedtrain.device import device_record
from fedtrain.errors import ConfigError
from fedtrain.io import json_roundtrip
from landscape.surface.directions import Directions, directions_sha256
from landscape.surface.passes import PassPlan
from landscape.surface.record import Surface, load_surface

__all__ = [
    "partial_to_resume",
    "check_same_request",
    "device_kind",
    "check_same_device",
    "check_same_directions",
    "stored_passes",
    "device_runs",
]


def partial_to_resume(target: Path | None, resume: bool) -> Surface | None:
    """The partial surface at ``target`` to finish, or ``None`` to start afresh; an unfinished file needs ``resume``.

    Raises:
        ConfigError: ``resume`` without a file to finish, or an unfinished file without ``resume``.
    """
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
    return existing


def check_same_request(partial: Surface | None, request: Mapping[str, Any], target: Path | None) -> None:
    """A partial surface is resumed only by the request that started it.

    Raises:
        ConfigError: a setting of ``request`` differs from the file's.
    """
    if partial is None:
        return
    stored = partial.metadata.get("request", {})
    differing = sorted(k for k in request if stored.get(k) != json_roundtrip(request[k]))
    if differing:
        raise ConfigError(
            f"Cannot resume {target}: it was computed with different settings ({', '.join(differing)}). Resume with "
            "the original settings, or start afresh without --resume."
        )


def device_kind(record: Mapping[str, Any]) -> str:
    """``"cpu"``, or ``"cuda (GPU model)"`` of a :func:`fedtrain.device.device_record`: what a resume must match."""
    device = str(record.get("device", "cpu"))
    return "cpu" if device == "cpu" else f"{device.split(':')[0]} ({record.get('name')})"


def check_same_device(partial: Surface | None, device: torch.device, target: Path | None) -> None:
    """A partial surface is finished on the kind of device it was started on.

    Raises:
        ConfigError: ``device`` is of another kind (CPU vs GPU, or another GPU model).
    """
    if partial is None:
        return
    stored = partial.metadata.get("device_used", {"device": "cpu"})
    started, here = device_kind(stored), device_kind(device_record(device))
    if started != here:
        raise ConfigError(
            f"Cannot resume {target} on {here}: it was started on {started}, and one grid computed on two kinds of "
            f"device would mix two float32 roundings. Resume it with --device {stored.get('device', 'cpu')} (or "
            "another GPU of the same model), or start afresh without --resume."
        )


def check_same_directions(partial: Surface | None, directions: Directions, target: Path | None) -> None:
    """A resumed grid must continue along the very axes it was started on.

    Raises:
        ConfigError: the recomputed directions differ from the file's.
    """
    if partial is not None and partial.metadata.get("directions_sha256") != directions_sha256(directions):
        raise ConfigError(
            f"The directions recomputed for resuming differ from those of the partial surface {target} "
            "(different library versions or non-deterministic Hessian directions). Start afresh without --resume."
        )


def stored_passes(partial: Surface | None, batch_size: int | None, points_per_pass: int | None) -> PassPlan | None:
    """The pass plan of a resume that leaves batch size or points per pass open: the file's values for those.

    ``None`` when there is no file, both values are given, or the file lacks them (the caller plans afresh).
    """
    if partial is None or (batch_size is not None and points_per_pass is not None):
        return None
    stored = partial.metadata.get("request", {})
    batch_size = stored.get("batch_size") if batch_size is None else batch_size
    points_per_pass = stored.get("points_per_pass") if points_per_pass is None else points_per_pass
    if isinstance(batch_size, int) and isinstance(points_per_pass, int):
        return PassPlan(points_per_pass, batch_size, "partial file")
    return None


def device_runs(partial: Surface | None, device: torch.device) -> list[dict[str, Any]]:
    """The runs that computed points of a surface: the file's (none recorded before devices were), then this one.

    Each run is ``{"device_used": device_record, "points_before": points done when it started}``.
    """
    earlier = [] if partial is None else list(partial.metadata.get("device_runs", []))
    return [*earlier, {"device_used": device_record(device), "points_before": 0 if partial is None else int(partial.done.sum())}]
