"""Gradient edits the flat-minima methods share inside a local step: a correction term and FL-Simulator's clipping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fedtrain.errors import ConfigError

__all__ = ["check_unit_interval", "check_non_negative", "trainable_names", "zeros_for", "add_and_clip"]


def check_unit_interval(value: float, name: str, method: str) -> None:
    """Raise :class:`ConfigError` unless ``0 <= value <= 1``."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"method {method!r} setting {name} (--method-arg {name}=...) must be in [0, 1], got {value}.")


def check_non_negative(value: float, name: str, method: str) -> None:
    """Raise :class:`ConfigError` unless ``value >= 0``."""
    if not value >= 0.0:
        raise ConfigError(f"method {method!r} setting {name} (--method-arg {name}=...) must be >= 0, got {value}.")


def trainable_names(worker: nn.Module) -> list[str]:
    """The names of the parameters local training updates (state-dict names; buffers excluded)."""
    return [name for name, p in worker.named_parameters() if p.requires_grad]


def zeros_for(global_params: Mapping[str, torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """A zero tensor like each named global weight (a control variate or direction before its first round)."""
    return {name: torch.zeros_like(global_params[name]) for name in names}


def add_and_clip(
    named: Sequence[tuple[str, nn.Parameter]], *, scale: float = 1.0, add: Mapping[str, torch.Tensor] | None = None,
    add_weight: float = 1.0, max_norm: float = 0.0,
) -> None:
    """``g <- scale * g + add_weight * add`` per parameter, then ``torch.nn.utils.clip_grad_norm_(max_norm)`` (0: none).

    FL-Simulator (``client/*.py``) backpropagates the correction term ``sum(w * add)`` into the SAM gradient
    and clips the total gradient norm at ``max_norm = 10`` before every SGD step; this is the same on ``.grad``.
    """
    for name, p in named:
        if p.grad is None:
            continue
        if scale != 1.0:
            p.grad.mul_(scale)
        if add is not None:
            p.grad.add_(add[name], alpha=add_weight)
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for _, p in named if p.grad is not None], max_norm)
