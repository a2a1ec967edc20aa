"""One client's local training: E epochs of mini-batch SGD, SAM or ASAM from the global weights, returning its delta.

Semantics follow the FedSAM reference (Caldarola et al., ECCV 2022, ``models/clients/client.py``): the
client starts from the global weights, builds a fresh ``torch.optim.SGD(lr, momentum, weight_decay)``,
and runs ``local_epochs`` passes over its shard in a random order (the last batch may be smaller, as
with a ``DataLoader`` without ``drop_last``). The order and any augmentation come from the generator
passed in, which the run derives from ``(seed, round, client)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fedtrain.batchnorm import frozen_statistics
from fedtrain.config import OPTIMIZERS
from fedtrain.data import apply_augmentation, augmentation_draws
from fedtrain.errors import ConfigError, LandscapeError
from fedtrain.sam import SAM

__all__ = ["ClientConfig", "ClientShard", "ClientUpdate", "NonFiniteLossError", "check_finite_loss", "client_update"]


class NonFiniteLossError(LandscapeError, ArithmeticError):
    """Training produced a NaN or infinite loss (usually a learning rate or rho that is too large)."""


def check_finite_loss(mean_loss: float, cfg: ClientConfig) -> None:
    """Raise :class:`NonFiniteLossError` when a client's mean training loss is NaN or infinite."""
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"The training loss became non-finite ({mean_loss}) during local training with lr={cfg.lr}, "
            f"optimizer={cfg.optimizer}, rho={cfg.rho}. Lower the learning rate (or rho), then resume from the "
            "last good checkpoint or start again."
        )


@dataclass(frozen=True)
class ClientConfig:
    """What a client needs to know to train: the local optimiser and its hyper-parameters for this round.

    ``optimizer`` is ``sgd`` (FedAvg), ``sam`` (FedSAM) or ``asam`` (FedASAM); ``rho``/``eta`` are
    used by the last two only.
    """

    lr: float
    local_epochs: int = 1
    batch_size: int = 64
    weight_decay: float = 0.0
    momentum: float = 0.0
    optimizer: str = "sgd"
    rho: float = 0.0
    eta: float = 0.0
    augment: bool = False


@dataclass(frozen=True)
class ClientShard:
    """A client's training data: uint8 images ``(N, C, H, W)``, int64 labels, and the normalisation to apply per batch.

    Without ``indices`` the client owns every row of ``images``/``labels``. With ``indices`` (int64, on
    the same device) ``images``/``labels`` are the whole training set, held once on its device, and the
    client's samples are those rows, so no client copies the data.
    """

    images: torch.Tensor
    labels: torch.Tensor
    normalize: Callable[[torch.Tensor], torch.Tensor]
    indices: torch.Tensor | None = None

    @property
    def num_examples(self) -> int:
        """Number of training samples ``n_k`` (the client's weight in the average)."""
        return int(self.labels.numel() if self.indices is None else self.indices.numel())

    @property
    def device(self) -> torch.device:
        """Where the shard's data lie (and where its client trains)."""
        return self.images.device


@dataclass(frozen=True)
class ClientUpdate:
    """A client's result: ``delta = w_k - w`` per state-dict entry, its sample count, and training metrics.

    A method of :mod:`fedtrain.methods` may add ``extras`` (tensors the client sends the server besides its
    delta, e.g. FedGAMMA's control-variate change) and ``client_state`` (the client's new persistent state,
    kept for the next round it is sampled in; the built-ins have none).
    """

    delta: dict[str, torch.Tensor]
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    client_state: dict[str, Any] = field(default_factory=dict)


def _epoch_draws(n: int, cfg: ClientConfig, generator: torch.Generator) -> torch.Tensor:
    """One local epoch's random draws, on the CPU generator in a fixed order: the sample order, then per batch the crops and flips.

    Returns:
        int64 ``(1, n)``: the order; with augmentation ``(4, n)``: the order, and in column ``j`` the
        :func:`~fedtrain.data.augmentation_draws` of the epoch's ``j``-th sample (drawn batch by batch).
    """
    order = torch.randperm(n, generator=generator)
    if not cfg.augment or n == 0:
        return order[None]
    draws = [augmentation_draws(min(cfg.batch_size, n - start), generator) for start in range(0, n, cfg.batch_size)]
    return torch.cat([order[None], torch.cat(draws, dim=1)])


def _batches(shard: ClientShard, cfg: ClientConfig, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised (optionally augmented) mini-batches for all local epochs, in the generator's order, on the shard's device.

    The random draws are made on ``generator`` (the CPU) for a whole epoch and moved to the device in one
    transfer, so every device sees the same batches, and a GPU gets one copy per epoch, not per step. The
    epoch's uint8 images are gathered and augmented in one pass (each image's crop depends only on its
    own draws); each batch is a slice of them, normalised on its own.
    """
    n = shard.num_examples
    for _ in range(cfg.local_epochs):
        draws = _epoch_draws(n, cfg, generator).to(shard.device)
        rows = draws[0] if shard.indices is None else shard.indices[draws[0]]
        images, labels = shard.images[rows], shard.labels[rows]
        if cfg.augment:
            images = apply_augmentation(images, draws[1:])
        for start in range(0, n, cfg.batch_size):
            yield shard.normalize(images[start : start + cfg.batch_size]), labels[start : start + cfg.batch_size]


def client_update(
    worker: nn.Module,
    global_state: Mapping[str, torch.Tensor],
    shard: ClientShard,
    cfg: ClientConfig,
    generator: torch.Generator,
    *,
    before_step: Callable[[Sequence[tuple[str, nn.Parameter]]], None] | None = None,
) -> ClientUpdate:
    """Train one client from the global weights and return its weight change.

    Args:
        worker: scratch module of the run's architecture, on the shard's device; its state is overwritten
            with ``global_state`` and then trained (it is the training loop's own workspace, never a caller's model).
        global_state: the global model's state dict (not modified), on the shard's device.
        shard: the client's data.
        cfg: the local optimiser for this round.
        generator: the client's generator for this round (data order, augmentation).
        before_step: called with the ``(name, parameter)`` pairs once their ``.grad`` holds the step's
            gradient (SAM/ASAM: the gradient at the perturbed point, the weights restored) and before the
            optimiser steps (which adds the weight decay and momentum), under ``torch.no_grad``; it may change
            the gradients in place (a method's correction term, clipping: :mod:`fedtrain.methods`).

    Returns:
        The update; ``metrics["train_loss"]`` is the sample-weighted mean mini-batch loss at the
        unperturbed weights (the first pass for SAM/ASAM), as the reference logs it.

    Raises:
        ConfigError: an unknown ``cfg.optimizer``.
        NonFiniteLossError: a mini-batch loss was NaN or infinite.
    """
    worker.load_state_dict(global_state)
    worker.train()
    named = [(name, p) for name, p in worker.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    base = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sam = None
    if cfg.optimizer in ("sam", "asam"):
        sam = SAM(named, base, rho=cfg.rho, adaptive=cfg.optimizer == "asam", eta=cfg.eta)
    elif cfg.optimizer != "sgd":
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}.")

    # The loss is summed on the device and read once per client (the finiteness check): no sync per step.
    loss_sum = torch.zeros((), dtype=torch.float64, device=shard.device)
    steps = 0
    for x, y in _batches(shard, cfg, generator):
        for p in params:
            p.grad = None
        loss = F.cross_entropy(worker(x), y)
        loss.backward()
        loss_sum += loss.detach().to(torch.float64) * y.numel()
        if sam is None:
            if before_step is not None:
                with torch.no_grad():
                    before_step(named)
            base.step()
        else:
            sam.perturb()
            with frozen_statistics(worker):
                F.cross_entropy(worker(x), y).backward()
            sam.restore_and_step(None if before_step is None else lambda: before_step(named))
        steps += 1
    for p in params:
        p.grad = None

    mean_loss = float(loss_sum) / max(shard.num_examples * cfg.local_epochs, 1)
    check_finite_loss(mean_loss, cfg)
    with torch.no_grad():
        new_state = worker.state_dict()
        delta = {name: new_state[name] - value for name, value in global_state.items()}
    return ClientUpdate(delta=delta, num_examples=shard.num_examples, metrics={"train_loss": mean_loss, "steps": float(steps)})
