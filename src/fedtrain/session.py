"""What a run's session computed with, of the settings that change floating-point results, and what a resume restores of it.

A resume is bit-identical to an uninterrupted run (on the CPU; on a GPU with deterministic kernels) only
if it computes as the run did: the same torch CPU thread count (it orders the reductions), the same kind
of device, the same deterministic-kernel setting. Every checkpoint records them (``versions.torch_threads``,
``state.device_used``, ``config.deterministic``); :func:`resume_numerics` takes each one the user did not
set explicitly from there, and returns a warning for each one set explicitly to something else.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fedtrain.checkpoint import load_checkpoint
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError

__all__ = ["SessionNumerics", "recorded_numerics", "resume_numerics"]

_PROMISE = "the resumed rounds may differ from an uninterrupted run in the last bits: bit-identity is no longer promised."


@dataclass(frozen=True)
class SessionNumerics:
    """The settings of a session that change floating-point results, as a checkpoint records them.

    Attributes:
        threads: torch's CPU thread count; ``None`` when nothing is recorded.
        device: the kind of device, ``"cpu"`` or ``"cuda"``.
        deterministic: whether deterministic GPU kernels were asked for.
    """

    threads: int | None = None
    device: str | None = None
    deterministic: bool | None = None


def recorded_numerics(checkpoint: str | os.PathLike[str]) -> SessionNumerics:
    """The :class:`SessionNumerics` a checkpoint records (all ``None`` when the file does not exist: a run killed before its first one).

    Raises:
        CheckpointError: an unreadable checkpoint.
    """
    if not Path(checkpoint).is_file():
        return SessionNumerics()
    ckpt = load_checkpoint(checkpoint)
    threads = str((ckpt.versions or {}).get("torch_threads", ""))
    device = str((ckpt.state.get("device_used") or {}).get("device", "")).split(":")[0]
    deterministic = ckpt.config.get("deterministic")
    return SessionNumerics(
        threads=int(threads) if threads.isdigit() and int(threads) > 0 else None,
        device=device if device in ("cpu", "cuda") else None,
        deterministic=deterministic if isinstance(deterministic, bool) else None,
    )


def _device_kind(spec: str) -> str:
    """``"cpu"`` or ``"cuda"``: what a device spec resolves to on this machine."""
    return "cpu" if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()) else "cuda"


def resume_numerics(
    saved: TrainConfig,
    recorded: SessionNumerics,
    *,
    device: str | None = None,
    deterministic: bool | None = None,
    threads: int | None = None,
) -> tuple[TrainConfig, int | None, list[str]]:
    """The config and thread count a resume computes with, and one warning per given setting that breaks bit-identity.

    Each setting left ``None`` is the recorded one (a saved ``device`` of ``auto`` that would now resolve
    to another kind of device becomes the recorded kind); one given that differs from the record is used,
    with a warning. ``deterministic`` only changes GPU numbers, so it is warned about only where a GPU
    computed or will compute.

    Args:
        saved: the run's saved config.
        recorded: what its last session computed with (:func:`recorded_numerics` of its ``latest.pt``).
        device: a device spec the user asked for, or ``None``.
        deterministic: deterministic kernels asked for, or ``None``.
        threads: a thread count asked for, or ``None``.

    Returns:
        The config to resume with, the thread count (``None``: leave torch's as it is) and the warnings.

    Raises:
        ConfigError: the run computed on a GPU, no device was asked for, and this machine has none.
    """
    warnings = []
    if threads is None:
        threads = recorded.threads
    elif recorded.threads is not None and threads != recorded.threads:
        warnings.append(f"--threads {threads}, but the run computed with {recorded.threads} CPU threads (recorded in "
                        f"latest.pt); {_PROMISE}")
    if device is None:
        device = saved.device
        if recorded.device is not None and _device_kind(device) != recorded.device:
            if recorded.device == "cuda" and not torch.cuda.is_available():
                raise ConfigError(
                    "This run computed on a GPU (recorded in latest.pt) and this machine has none. Resume it on a "
                    f"machine with a GPU, or pass --device cpu to continue on the CPU ({_PROMISE[:-1]})."
                )
            device = recorded.device
    elif recorded.device is not None and _device_kind(device) != recorded.device:
        warnings.append(f"--device {device}, but the run computed on {recorded.device} (recorded in latest.pt); {_PROMISE}")
    if deterministic is None:
        deterministic = saved.deterministic if recorded.deterministic is None else recorded.deterministic
    elif recorded.deterministic not in (None, deterministic) and "cuda" in (recorded.device, _device_kind(device)):
        warnings.append(f"--{'' if deterministic else 'no-'}deterministic, but the run computed "
                        f"{'with' if recorded.deterministic else 'without'} deterministic GPU kernels; {_PROMISE}")
    return dataclasses.replace(saved, device=device, deterministic=deterministic), threads, warnings
