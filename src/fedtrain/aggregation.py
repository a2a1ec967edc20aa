"""Server-side aggregation: the sample-weighted mean of the clients' weight changes."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedtrain.client import ClientUpdate
from fedtrain.errors import ConfigError

__all__ = ["aggregate"]


def aggregate(updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
    """FedAvg's weighted mean :math:`\\bar\\Delta = \\sum_k n_k \\Delta_k / \\sum_k n_k` (McMahan et al. 2017).

    Floating-point entries are accumulated in float64 and cast back to their dtype, so the result does
    not depend on float32 rounding of partial sums. Integer entries (e.g. BatchNorm's
    ``num_batches_tracked``) are counters, not averaged: the first update's value is copied.

    Args:
        updates: the sampled clients' updates, in a fixed order.

    Returns:
        The mean delta, one tensor per state-dict entry.

    Raises:
        ValueError: no updates.
        ConfigError: the clients hold zero samples in total.
    """
    if not updates:
        raise ValueError("aggregate() needs at least one client update.")
    total = sum(u.num_examples for u in updates)
    if total <= 0:
        raise ConfigError(
            "aggregate() needs clients with at least one training sample in total; every sampled client is empty. "
            "Use a partition without empty clients (another scheme, a larger alpha or fewer clients)."
        )
    mean: dict[str, torch.Tensor] = {}
    for name, first in updates[0].delta.items():
        if not first.is_floating_point():
            mean[name] = first.clone()
            continue
        acc = torch.zeros_like(first, dtype=torch.float64)
        for update in updates:
            acc.add_(update.delta[name].to(torch.float64), alpha=update.num_examples)
        mean[name] = acc.div_(total).to(first.dtype)
    return mean
