"""The server's side of a round: which clients train, and how the global model moves with their mean delta.

The server step is FedOpt with SGD (Reddi et al., ICLR 2021) on the pseudo-gradient :math:`-\\bar\\Delta`,
as the FedSAM reference scripts run FedAvg (``-algorithm fedopt --server-opt sgd --server-lr 1``):

.. math::

    m \\leftarrow \\beta m + (-\\bar\\Delta), \\qquad w \\leftarrow w - \\eta_s m

with PyTorch's SGD convention that the first momentum buffer is the first pseudo-gradient. With
:math:`\\eta_s = 1, \\beta = 0` this is exactly FedAvg, :math:`w \\leftarrow w + \\bar\\Delta`; with
:math:`\\beta > 0` it is FedAvgM (Hsu et al. 2019).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from fedtrain._seeds import derived_generator
from fedtrain.errors import ConfigError

__all__ = ["ServerState", "select_clients", "server_update"]

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ServerState:
    """Everything the server carries from one round to the next; exactly what a checkpoint serialises.

    Attributes:
        round: number of completed rounds (the next round to run is ``round``, 0-indexed).
        params: the global model's state dict.
        momentum: the server momentum buffer (``None`` until the first momentum step, or without momentum).
        swa_params: the SWA model (``None`` until SWA has a model).
        swa_count: number of global models averaged into ``swa_params``.
        method_state: the method's own server state (:mod:`fedtrain.methods`; ``{}`` for the built-ins).
        client_states: each client's persistent state of the method, by client id (only clients that have one).
    """

    round: int
    params: StateDict
    momentum: StateDict | None = None
    swa_params: StateDict | None = None
    swa_count: int = 0
    method_state: dict[str, Any] = field(default_factory=dict)
    client_states: dict[int, dict[str, Any]] = field(default_factory=dict)


def select_clients(seed: int, round: int, num_clients: int, k: int, *, scheme: str = "toolkit") -> list[int]:
    """The ``k`` clients of round ``round``: uniform without replacement, sorted.

    ``scheme="toolkit"``: the generator is derived from ``(seed, round)`` only, so every algorithm trained with
    the same seed sees the same client sequence, and the choice needs no saved random state to resume.

    ``scheme="reference"``: the FedSAM code's draw (``select_clients`` of ``models/servers/fedavg_server.py``,
    fedsam.md §1.1), ``np.random.seed(round); np.random.choice(possible_clients, k, replace=False)`` over its
    client list, here the positions ``0 .. num_clients - 1`` (the reference lists its users sorted by id). A
    local ``RandomState(round)`` draws the same positions as the seeded global one without touching NumPy's
    global state; ``seed`` does not enter, so every seed sees the same clients, as in the reference. The
    reference trains them in draw order; here they are sorted like the toolkit's, which changes only the order
    of the float64 sum of their deltas.

    Raises:
        ConfigError: ``k`` is not in ``1..num_clients``, or an unknown ``scheme``.
    """
    if not 1 <= k <= num_clients:
        raise ConfigError(
            f"clients per round must be between 1 and the number of clients ({num_clients}), got {k}. "
            "Lower --clients-per-round or raise --num-clients."
        )
    if scheme == "reference":
        return sorted(int(c) for c in np.random.RandomState(round).choice(num_clients, k, replace=False))
    if scheme != "toolkit":
        raise ConfigError(f"client sampling (--client-sampling) must be toolkit or reference, got {scheme!r}.")
    generator = derived_generator(seed, "select-clients", round)
    return sorted(torch.randperm(num_clients, generator=generator)[:k].tolist())


def server_update(
    state: ServerState, mean_delta: Mapping[str, torch.Tensor], *, server_lr: float = 1.0, server_momentum: float = 0.0
) -> ServerState:
    """Apply the clients' mean delta to the global model and advance the round.

    Args:
        state: the server state before the round.
        mean_delta: :func:`fedtrain.aggregation.aggregate` of the round's updates.
        server_lr: the server learning rate :math:`\\eta_s`.
        server_momentum: the server momentum :math:`\\beta`.

    Returns:
        A new state (``state`` is not modified).
    """
    params: StateDict = {}
    momentum: StateDict | None = {} if server_momentum != 0.0 else None
    with torch.no_grad():
        for name, value in state.params.items():
            delta = mean_delta[name]
            if not value.is_floating_point():
                params[name] = value + delta  # integer counters: take the copied client value
                continue
            if momentum is None:
                params[name] = value + delta if server_lr == 1.0 else value + server_lr * delta
                continue
            pseudo_grad = -delta
            previous = None if state.momentum is None else state.momentum.get(name)
            buf = pseudo_grad.clone() if previous is None else previous * server_momentum + pseudo_grad
            momentum[name] = buf
            params[name] = value - server_lr * buf
    return replace(state, round=state.round + 1, params=params, momentum=momentum)
