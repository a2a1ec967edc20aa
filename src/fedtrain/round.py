"""One federated round as functions over explicit state: plan -> client updates -> aggregate, server step and SWA.

The round splits where a federated deployment splits it (Flower's configure/fit/aggregate):

* :func:`plan_round` (server): what round ``t`` does, from the settings alone: the client learning rate
  (cyclical once SWA starts), the sampled clients, their :class:`~fedtrain.client.ClientConfig`, and
  whether the SWA model starts before the round or collects the model after it (:mod:`fedtrain.swa`);
* :func:`~fedtrain.client.client_update` (each client), with the generator :func:`client_generator`;
* :func:`aggregate_round` (server): the sample-weighted mean delta, a finiteness check, the server step
  (:func:`~fedtrain.server.server_update`) and the SWA start/collection.

:func:`federated_round` composes the three; ``fedtrain.run.train`` loops over it. Every random choice is
derived from ``(seed, purpose, round, client)``, so a round depends on nothing but its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from fedtrain._seeds import derived_generator
from fedtrain.client import ClientConfig, ClientShard, ClientUpdate, NonFiniteLossError, client_update
from fedtrain.cohort import CohortSettings, cohort_settings, cohort_update
from fedtrain.config import TrainConfig
from fedtrain.methods import ClientContext, Method, ServerContext, load_method
from fedtrain.server import ServerState, select_clients
from fedtrain.swa import collects, cyclic_lr, starts_swa_model, swa_average

__all__ = [
    "RoundData",
    "RoundPlan",
    "RoundMetrics",
    "plan_round",
    "client_generator",
    "train_clients",
    "aggregate_round",
    "federated_round",
]


@dataclass(frozen=True)
class RoundData:
    """What the clients train on: one shard per client, whether batches are augmented, and the scratch model.

    Attributes:
        shards: client ``k``'s data is ``shards[k]``.
        augment: random crop and flip of every training batch (the CIFAR datasets).
        worker: a module of the run's architecture that client training overwrites and trains; never a
            model anyone else holds. It lies on the shards' device, as does the server state it is given.
    """

    shards: Sequence[ClientShard]
    augment: bool
    worker: nn.Module


@dataclass(frozen=True)
class RoundPlan:
    """The server's decisions for round ``round`` (0-indexed), taken before any client trains.

    Attributes:
        round: the round index.
        lr: the clients' learning rate.
        clients: the sampled clients, sorted.
        client_config: the local optimiser every sampled client runs.
        starts_swa: the SWA model starts as a copy of the global model before this round (``swa_collect="reference"``).
        collects_swa: the global model after this round is averaged into the SWA model.
    """

    round: int
    lr: float
    clients: tuple[int, ...]
    client_config: ClientConfig
    starts_swa: bool = False
    collects_swa: bool = False


@dataclass(frozen=True)
class RoundMetrics:
    """What one round reports besides the new server state.

    Attributes:
        lr: the clients' learning rate.
        train_loss: the sample-weighted mean of the clients' training losses.
        num_samples: samples processed by all clients (their sizes times the local epochs).
        clients: the clients that trained.
    """

    lr: float
    train_loss: float
    num_samples: int
    clients: tuple[int, ...]


def plan_round(config: TrainConfig, round_index: int, *, augment: bool = False) -> RoundPlan:
    """Plan round ``round_index``: learning rate, clients, local optimiser, SWA start and collection.

    Args:
        config: the run's settings.
        round_index: the round (0-indexed).
        augment: whether the clients augment their batches (a property of the dataset).

    Returns:
        The plan; it depends on nothing but the arguments.
    """
    swa_start = config.swa_start_round
    lr = config.lr
    if config.swa:
        lr = cyclic_lr(round_index, lr=config.lr, swa_lr=config.swa_lr, cycle=config.swa_c, start=swa_start)
    client_config = ClientConfig(
        lr=lr, local_epochs=config.local_epochs, batch_size=config.batch_size, weight_decay=config.weight_decay,
        momentum=config.momentum, optimizer=config.optimizer, rho=config.rho or 0.0, eta=config.eta, augment=augment,
    )
    return RoundPlan(
        round=round_index,
        lr=lr,
        clients=tuple(select_clients(config.seed, round_index, config.num_clients, config.clients_per_round,
                                     scheme=config.client_sampling)),
        client_config=client_config,
        starts_swa=config.swa and starts_swa_model(round_index, start=swa_start, collect=config.swa_collect),
        collects_swa=config.swa and collects(round_index, start=swa_start, cycle=config.swa_c, collect=config.swa_collect),
    )


def client_generator(seed: int, round_index: int, client: int) -> torch.Generator:
    """Client ``client``'s generator in round ``round_index`` (its data order and augmentation)."""
    return derived_generator(seed, "client", round_index, client)


def train_clients(
    global_params: Mapping[str, torch.Tensor], plan: RoundPlan, data: RoundData, *, seed: int,
    cohort: CohortSettings = CohortSettings(), method: Method | None = None, server: ServerState | None = None,
) -> list[ClientUpdate]:
    """Every sampled client's update from the global model (the method's client update), in the plan's order.

    Args:
        global_params: the global model's state dict (not modified).
        plan: the round's plan.
        data: the shards and the scratch model.
        seed: the run's seed.
        cohort: one client after another (``sequential``, the default) or all together
            (``vmap``: :func:`fedtrain.cohort.cohort_update`, same batches, equal up to float32 rounding;
            only for a method that supports it).
        method: the run's method (:mod:`fedtrain.methods`); ``None`` is FedAvg's client update with the
            plan's local optimiser (:func:`~fedtrain.client.client_update`).
        server: the server state before the round: the method's server state (broadcast to the clients) and
            each client's own state; ``None``: no state.

    Returns:
        One update per client of ``plan.clients``, each with the client's new state in ``client_state``.
    """
    if cohort.mode == "vmap" and (method is None or method.supports_vmap):
        shards = [data.shards[k] for k in plan.clients]
        generators = [client_generator(seed, plan.round, k) for k in plan.clients]
        return cohort_update(data.worker, global_params, shards, plan.client_config, generators, cohort)
    if method is None or type(method).client_update is Method.client_update:  # FedAvg's local loop, stateless
        return [
            client_update(data.worker, global_params, data.shards[k], plan.client_config, client_generator(seed, plan.round, k))
            for k in plan.clients
        ]
    server = server if server is not None else ServerState(round=plan.round, params=dict(global_params))
    updates = []
    for k in plan.clients:
        ctx = ClientContext(round=plan.round, client=k, config=plan.client_config, generator=client_generator(seed, plan.round, k),
                            worker=data.worker, server_state=server.method_state)
        update, client_state = method.client_update(global_params, data.shards[k], server.client_states.get(k, {}), ctx)
        updates.append(replace(update, client_state=dict(client_state)))
    return updates


def _all_finite(tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether every floating-point entry is finite; one device-to-host read for all tensors together."""
    checks = [torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()]
    return not checks or bool(torch.stack(checks).all())


def aggregate_round(
    state: ServerState, config: TrainConfig, plan: RoundPlan, updates: Sequence[ClientUpdate], *, method: Method | None = None
) -> tuple[ServerState, RoundMetrics]:
    """The server's side of a round: SWA start, the method's server step, finiteness check, client states, SWA collection.

    Args:
        state: the server state before the round (not modified).
        config: the run's settings (server optimiser, local epochs).
        plan: the round's plan (:func:`plan_round`).
        updates: the clients' updates, in the plan's client order.
        method: the run's method; ``None``: the one ``config.algorithm`` names (:func:`fedtrain.methods.load_method`).

    Returns:
        The new state (``round`` advanced by one; the method's server state and the trained clients' states
        replaced) and the round's metrics.

    Raises:
        NonFiniteLossError: the new global weights have a NaN or infinite entry.
    """
    method = load_method(config) if method is None else method
    if plan.starts_swa:
        state = replace(state, swa_params={k: v.clone() for k, v in state.params.items()}, swa_count=0)
    # The FedOpt momentum buffer keeps its own field (and its place in checkpoints); the method sees it in its state.
    server_state = {**state.method_state, **({} if state.momentum is None else {"server_momentum": state.momentum})}
    ctx = ServerContext(round=plan.round, lr=plan.lr, clients=plan.clients, config=config)
    params, server_state = method.server_step(state.params, updates, server_state, ctx)
    if not _all_finite(params):
        raise NonFiniteLossError("The clients' mean update became non-finite. Lower the learning rate (or rho).")
    server_state = dict(server_state)
    momentum = server_state.pop("server_momentum", None)
    client_states = dict(state.client_states)
    for k, update in zip(plan.clients, updates):
        if update.client_state:
            client_states[k] = update.client_state
        else:
            client_states.pop(k, None)
    new = replace(state, round=state.round + 1, params=params, momentum=momentum, method_state=server_state,
                  client_states=client_states)
    if plan.collects_swa:
        swa_params, count = swa_average(new.swa_params, new.swa_count, new.params)
        new = replace(new, swa_params=swa_params, swa_count=count)
    num_examples = sum(u.num_examples for u in updates)
    loss = sum(u.metrics["train_loss"] * u.num_examples for u in updates) / max(num_examples, 1)
    metrics = RoundMetrics(lr=plan.lr, train_loss=loss, num_samples=num_examples * config.local_epochs, clients=plan.clients)
    return new, metrics


def federated_round(
    state: ServerState, config: TrainConfig, data: RoundData, round_index: int
) -> tuple[ServerState, RoundMetrics]:
    """One round of the run's method (:func:`fedtrain.methods.load_method`: FedAvg, FedSAM, FedASAM, ...) + server-side SWA.

    .. math::

        \\bar\\Delta = \\frac{\\sum_{k \\in S_t} n_k \\Delta_k}{\\sum_{k \\in S_t} n_k}, \\qquad
        w_{t+1} = \\mathrm{ServerOpt}(w_t, \\bar\\Delta)

    with :math:`S_t` the sampled clients and :math:`\\Delta_k` client :math:`k`'s local SGD/SAM/ASAM
    change from :math:`w_t` (McMahan et al. 2017; Caldarola et al. 2022).

    Args:
        state: the server state after ``round_index`` rounds (not modified).
        config: the run's settings.
        data: the clients' shards, augmentation and scratch model.
        round_index: the round to run (0-indexed); must equal ``state.round``.

    Returns:
        The state after the round and the round's metrics.

    Raises:
        ValueError: ``round_index`` is not ``state.round``.
        NonFiniteLossError: a client's loss or the mean update became non-finite.
    """
    if round_index != state.round:
        raise ValueError(f"round_index ({round_index}) must be the state's round ({state.round}).")
    plan = plan_round(config, round_index, augment=data.augment)
    method = load_method(config)
    cohort = cohort_settings(config, data.worker, method_refusal=method.vmap_refusal())
    updates = train_clients(state.params, plan, data, seed=config.seed, cohort=cohort, method=method, server=state)
    return aggregate_round(state, config, plan, updates, method=method)
