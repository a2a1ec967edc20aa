"""Evaluation of a model state on a fixed, never-augmented set: mean cross-entropy and accuracy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from fedtrain.batchnorm import recompute_statistics

__all__ = ["evaluate_state"]


@torch.no_grad()
def evaluate_state(
    evaluator: nn.Module,
    state: Mapping[str, torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 1000,
    batchnorm_batches: Iterable[torch.Tensor] = (),
) -> dict[str, float]:
    """Loss and accuracy of ``state`` on ``(inputs, labels)``.

    Args:
        evaluator: scratch module of the right architecture, on the inputs' device (its state is overwritten).
        state: the state dict to evaluate.
        inputs: normalised float inputs; labels: int64 labels.
        batch_size: evaluation batch size (memory only; results do not depend on it beyond float rounding).
        batchnorm_batches: training inputs on which BatchNorm statistics are recomputed first (SWA models);
            consumed only when the model has BatchNorm layers.

    Returns:
        ``{"loss": mean cross-entropy, "accuracy": fraction correct}``.
    """
    evaluator.load_state_dict(state)
    recompute_statistics(evaluator, batchnorm_batches)
    evaluator.eval()
    # Sums stay on the inputs' device and are read once at the end: no device-to-host sync per batch.
    loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
    correct = torch.zeros((), dtype=torch.int64, device=inputs.device)
    for start in range(0, labels.numel(), batch_size):
        x, y = inputs[start : start + batch_size], labels[start : start + batch_size]
        logits = evaluator(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").to(torch.float64)
        correct += (logits.argmax(dim=1) == y).sum()
    n = max(labels.numel(), 1)
    return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n}
