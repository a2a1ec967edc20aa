"""The Flower ServerApp: this toolkit's run (directory, checkpoints, evaluation, resume) with each round's client work sent to Flower nodes.

:func:`flower_round_fn` is a :data:`fedtrain.run.RoundFn`: it plans the round, sends each sampled client's
task to its node over the Grid, and aggregates the replies with the native engine's functions
(:mod:`fedtrain.flower.strategy`). :func:`make_server_app` wraps :func:`fedtrain.run.train` with it in a
ServerApp, so a Flower run writes the same run directory and checkpoints as ``--engine native``;
:func:`train_flower` runs that ServerApp with the ClientApp in Flower's simulation engine (Ray) on this
machine. ``flwr run flower_app`` starts the same apps (``fedtrain.flower.app``), and on a deployment the
ServerApp runs on the SuperLink's side and each SuperNode trains its own clients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedtrain.config import TrainConfig
from fedtrain.device import resolve_device
from fedtrain.errors import ConfigError, LandscapeError
from fedtrain.flower.strategy import client_nodes, collect_updates, train_messages
from fedtrain.round import RoundData, RoundMetrics, aggregate_round, plan_round
from fedtrain.run import RoundFn, load_run_config, train
from fedtrain.server import ServerState

__all__ = ["flower_round_fn", "make_server_app", "train_flower", "simulation_backend"]


def flower_round_fn(grid: Grid, *, timeout: float | None = None, connect_timeout: float = 600.0) -> RoundFn:
    """A round function for :func:`fedtrain.run.train` whose clients train on the Grid's nodes.

    Args:
        grid: the ServerApp's Grid.
        timeout: seconds to wait for a round's replies (``None``: until all arrive).
        connect_timeout: seconds to wait for nodes holding the sampled clients to connect.
    """
    nodes: dict[int, int] = {}

    def round_fn(state: ServerState, config: TrainConfig, data: RoundData, round_index: int) -> tuple[ServerState, RoundMetrics]:
        if round_index != state.round:
            raise ValueError(f"round_index ({round_index}) must be the state's round ({state.round}).")
        plan = plan_round(config, round_index, augment=data.augment)
        if not set(plan.clients) <= set(nodes):  # the federation's membership, asked once and again when it changed
            nodes.update(client_nodes(grid, range(config.num_clients), timeout=connect_timeout))
        device = next(iter(state.params.values())).device
        replies = grid.send_and_receive(train_messages(plan, state.params, config, nodes), timeout=timeout)
        return aggregate_round(state, config, plan, collect_updates(plan, replies, device))

    return round_fn


@dataclass
class _Outcome:
    """What the ServerApp's thread hands back: the run's summary or the error that stopped it."""

    summary: dict[str, Any] | None = None
    error: LandscapeError | None = None


def make_server_app(
    config: TrainConfig | None, out_dir: str | os.PathLike[str], *, timeout: float | None = None, **train_options: Any
) -> tuple[ServerApp, _Outcome]:
    """A ServerApp running :func:`fedtrain.run.train` with :func:`flower_round_fn`, and where its outcome lands.

    Args:
        config, out_dir: as :func:`fedtrain.run.train`.
        timeout: seconds to wait for a round's replies (``None``: until all arrive).
        train_options: :func:`fedtrain.run.train`'s other keyword arguments (``resume``, ``overwrite``,
            ``init_from``, ``progress``, ...), passed on unchanged.

    The library's errors do not escape the ServerApp (Flower would log them with a traceback); they are
    kept in the outcome for the caller to raise.
    """
    outcome = _Outcome()
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            outcome.summary = train(config, out_dir, round_fn=flower_round_fn(grid, timeout=timeout), **train_options)
        except LandscapeError as err:
            outcome.error = err

    return app, outcome


def simulation_backend(*, cpus_per_client: float = 1.0, gpus_per_client: float = 0.0, total_cpus: int | None = None) -> dict[str, Any]:
    """Flower's Ray backend settings: each ClientApp's resources, and the CPUs Ray may use on this machine.

    ``total_cpus / cpus_per_client`` clients train at once (Flower's default is 2 CPUs per client and every
    CPU of the machine). One CPU per client and one client at a time (``total_cpus=1``) keep a shared machine
    usable and the numbers those of a one-thread native run.
    """
    init_args: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if total_cpus is not None:
        init_args["num_cpus"] = total_cpus
    return {"client_resources": {"num_cpus": cpus_per_client, "num_gpus": gpus_per_client}, "init_args": init_args}


def train_flower(
    config: TrainConfig | None,
    out_dir: str | os.PathLike[str],
    *,
    num_supernodes: int | None = None,
    backend_config: dict[str, Any] | None = None,
    **train_options: Any,
) -> dict[str, Any]:
    """:func:`fedtrain.run.train` with Flower: the ServerApp and ClientApp in Flower's simulation engine (Ray) on this machine.

    Every client is a virtual SuperNode (``partition-id`` = client index); the run directory, checkpoints,
    metrics and summary are those of the native engine, and so are the numbers (same seed, same device).

    Args:
        config, out_dir: as :func:`fedtrain.run.train`.
        num_supernodes: virtual SuperNodes (default and minimum: the run's ``num_clients``).
        backend_config: the Ray backend's settings (default :func:`simulation_backend`: one CPU per client,
            one client at a time, and the whole GPU when the run's device is a GPU; a ClientApp sees its GPU
            as ``cuda:0``, so use ``device`` ``auto`` or ``cuda``).
        train_options: :func:`fedtrain.run.train`'s other keyword arguments (``resume``, ``overwrite``,
            ``init_from``, ``progress``, ``threads``, ...), passed on unchanged. ``threads`` sets the server's
            thread count; a simulated node computes with its ClientApp's CPUs (``cpus_per_client``).

    Returns:
        The run's summary.

    Raises:
        ConfigError, CheckpointError, NonFiniteLossError: as :func:`fedtrain.run.train`, also when a node raised them.
        LandscapeError: a node failed or did not answer.
    """
    from flwr.simulation import run_simulation

    from fedtrain.flower.client_app import make_client_app
    from fedtrain.methods import load_method

    resolved = config if config is not None else load_run_config(out_dir)
    if not load_method(resolved).uses_default_steps():
        raise ConfigError(
            f"--engine flower trains fedavg, fedsam and fedasam (its nodes run FedAvg's client update with their local "
            f"optimiser); method {resolved.algorithm!r} has a client update or server step of its own. Use --engine native."
        )
    nodes = resolved.num_clients if num_supernodes is None else num_supernodes
    if nodes < resolved.num_clients:
        raise ConfigError(f"num_supernodes ({nodes}) must be at least num_clients ({resolved.num_clients}): each virtual "
                          "SuperNode holds one client. Raise --num-supernodes or lower --num-clients.")
    server_app, outcome = make_server_app(config, out_dir, **train_options)
    if backend_config is None:  # Ray hides the GPUs from a ClientApp given none, so a GPU run gives each one the GPU
        gpus = 1.0 if resolve_device(resolved.device).type == "cuda" else 0.0
        backend_config = simulation_backend(total_cpus=1, gpus_per_client=gpus)
    run_simulation(server_app=server_app, client_app=make_client_app(), num_supernodes=nodes, backend_config=backend_config)
    if outcome.error is not None:
        raise outcome.error
    if outcome.summary is None:
        raise LandscapeError("The Flower simulation ended without finishing the run (its log says why). "
                             f"Resume it with --resume {out_dir} --engine flower.")
    return outcome.summary
