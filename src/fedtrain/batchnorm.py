"""BatchNorm running statistics: which layers have them, freezing them, recomputing them, resetting them functionally.

A BatchNorm layer normalises with the batch's own mean and variance in train mode and updates its
running estimates :math:`\\hat\\mu \\leftarrow (1 - m)\\hat\\mu + m\\mu_B` (momentum :math:`m`; with
``momentum=None`` the cumulative average over the batches since the last reset); in eval mode it
normalises with the running estimates and changes nothing. Three places need more than that:

* SAM's second, perturbed forward pass must not move the statistics (:func:`frozen_statistics`);
* an averaged (SWA) model's weights do not match any model's statistics, so they are recomputed from
  training data (:func:`recompute_statistics`, as ``torch.optim.swa_utils.update_bn``);
* loss surfaces recompute them at every grid point through ``torch.func.functional_call`` on buffer
  dicts (:func:`reset_statistics` gives the fresh buffers, :func:`cumulative_statistics` the average).

Only layers that track running statistics count: a BatchNorm with ``track_running_stats=False`` always
normalises with the batch and has nothing to freeze or recompute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

__all__ = [
    "batchnorm_layers",
    "has_batchnorm",
    "frozen_statistics",
    "cumulative_statistics",
    "recompute_statistics",
    "reset_statistics",
]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the model has BatchNorm layers that track running statistics."""
    return bool(batchnorm_layers(model))


@contextlib.contextmanager
def frozen_statistics(model: nn.Module) -> Iterator[None]:
    """Train-mode forward passes inside the block leave the running statistics (and batch counts) as they were.

    The layers still normalise with the batch statistics; only the running estimates stay put (momentum
    0 for the block; ``num_batches_tracked`` restored after it). SAM needs this for its perturbed pass.
    """
    norms = batchnorm_layers(model)
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


@contextlib.contextmanager
def cumulative_statistics(model: nn.Module) -> Iterator[None]:
    """Inside the block the running statistics are the cumulative average over all batches since their reset (momentum ``None``)."""
    norms = batchnorm_layers(model)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = None
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


@torch.no_grad()
def recompute_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> bool:
    """Recompute the running statistics of ``model`` on ``batches`` (cumulative average), in place.

    This is the pass SWA needs because averaged weights do not match averaged statistics; the FedSAM
    code skips it (its CNN has no BatchNorm). ``model`` must be the caller's own evaluation copy; its
    train/eval mode is restored.

    Args:
        model: the model whose statistics are recomputed.
        batches: training inputs; not consumed when the model has no BatchNorm.

    Returns:
        Whether the model had BatchNorm layers (and was updated).
    """
    norms = batchnorm_layers(model)
    if not norms:
        return False
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
    model.train()
    with cumulative_statistics(model):
        for x in batches:
            model(x)
    model.train(was_training)
    return True


def reset_statistics(buffers: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fresh copies of a model's buffers with BatchNorm statistics reset: running mean 0, variance 1, count 0.

    The functional twin of ``reset_running_stats`` for ``torch.func.functional_call``, which writes the
    statistic updates of train-mode passes into the dict it is given. Other buffers are cloned.
    """
    fresh = {}
    for name, buffer in buffers.items():
        if name.endswith("running_var"):
            fresh[name] = torch.ones_like(buffer)
        elif name.endswith(("running_mean", "num_batches_tracked")):
            fresh[name] = torch.zeros_like(buffer)
        else:
            fresh[name] = buffer.clone()
    return fresh
