"""The Flower strategy of FedAvg / FedSAM / FedASAM (+ server-side SWA): this toolkit's round functions behind Flower's Strategy hooks.

Flower's round is ``configure_train`` -> nodes train -> ``aggregate_train``; ours is
:func:`~fedtrain.round.plan_round` -> :func:`~fedtrain.client.client_update` per client ->
:func:`~fedtrain.round.aggregate_round`. The free functions here are the seam: :func:`train_messages` turns a
plan into one train message per sampled client, addressed to the node that holds it (:func:`client_nodes`),
and :func:`collect_updates` turns the replies back into the plan's updates, in the plan's client order, so the
aggregation, the server step (server lr, momentum) and SWA are the native engine's own functions, on the same
numbers. :class:`FedLandscapeStrategy` wraps them as a ``flwr.serverapp.strategy.Strategy`` (its state: the
:class:`~fedtrain.server.ServerState`, as Flower's FedAvgM keeps its momentum), for a Flower user's own
ServerApp (``strategy.start(grid, initial_arrays, num_rounds)``); ``fedtrain.flower.server_app`` drives the
same functions from this toolkit's run loop (checkpoints, evaluation, resume).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from logging import INFO

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedtrain.client import ClientUpdate
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError, LandscapeError
from fedtrain.flower.records import TrainTask, arrays_from_state, state_from_arrays, task_content, update_from_content
from fedtrain.round import RoundPlan, aggregate_round, plan_round
from fedtrain.server import ServerState

__all__ = ["FedLandscapeStrategy", "client_nodes", "train_messages", "collect_updates"]


def client_nodes(grid: Grid, clients: Iterable[int], *, timeout: float = 600.0) -> dict[int, int]:
    """Which node holds each client: every connected node is asked (a ``query`` message) for its clients.

    Waits up to ``timeout`` seconds for nodes holding all of ``clients`` to connect and answer (a
    deployment's SuperNodes may join late; a simulation's are all there at once, but their ClientApps may
    take minutes to start on a loaded machine).

    Returns:
        client index -> node id, for every client some node holds.

    Raises:
        ConfigError: some of ``clients`` are held by no node after ``timeout``, or two nodes hold one client.
    """
    needed = set(clients)
    deadline = time.monotonic() + timeout
    while True:
        nodes = list(grid.get_node_ids())
        query = RecordDict({"config": ConfigRecord({"what": "clients"})})
        remaining = max(deadline - time.monotonic(), 1.0)
        replies = grid.send_and_receive([Message(query, dst_node_id=n, message_type=MessageType.QUERY) for n in nodes], timeout=remaining)
        held: dict[int, int] = {}
        for reply in replies:
            if reply.has_error() or "config" not in reply.content or "clients" not in reply.content["config"]:
                continue
            for k in reply.content["config"]["clients"]:
                if held.setdefault(int(k), reply.metadata.src_node_id) != reply.metadata.src_node_id:
                    raise ConfigError(f"Client {k} is held by two Flower nodes; give each node its own partition-id.")
        missing = sorted(needed - set(held))
        if not missing:
            return held
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"No Flower node holds client(s) {missing[:10]}{' ...' if len(missing) > 10 else ''} ({len(nodes)} node(s) "
                "connected). In a simulation use num-supernodes >= num_clients; in a deployment start one SuperNode per "
                "client with --node-config \"partition-id=K\"."
            )
        time.sleep(1.0)


def train_messages(plan: RoundPlan, global_state: Mapping[str, torch.Tensor], config: TrainConfig, nodes: Mapping[int, int]) -> list[Message]:
    """One train message per sampled client of ``plan``, to the node that holds it, in the plan's order."""
    return [
        Message(task_content(TrainTask(k, plan.round, plan.client_config, config), global_state),
                dst_node_id=nodes[k], message_type=MessageType.TRAIN)
        for k in plan.clients
    ]


def collect_updates(plan: RoundPlan, replies: Iterable[Message], device: torch.device | str = "cpu") -> list[ClientUpdate]:
    """The sampled clients' updates from the nodes' replies, in the plan's client order (the order the native engine sums in).

    Raises:
        LandscapeError: a node failed (Flower's error, or the error the client reported, re-raised as its own
            type, e.g. ``NonFiniteLossError``), or some clients did not reply.
    """
    updates: dict[int, ClientUpdate] = {}
    for reply in replies:
        if reply.has_error():
            raise LandscapeError(f"A Flower node failed in round {plan.round + 1}: {reply.error.reason} "
                                 f"(code {reply.error.code}). The node's log has the details.")
        client, update = update_from_content(reply.content, device)
        updates[client] = update
    missing = [k for k in plan.clients if k not in updates]
    if missing:
        raise LandscapeError(f"Client(s) {missing} sent no reply in round {plan.round + 1} (a node left or the timeout passed). "
                             "Resume the run from its latest checkpoint once the nodes are back.")
    return [updates[k] for k in plan.clients]


class FedLandscapeStrategy(Strategy):
    """FedAvg / FedSAM / FedASAM with the server optimiser and server-side SWA, as a Flower strategy.

    The algorithm, its hyper-parameters, the client sampling and SWA schedule all come from ``config``
    (:class:`~fedtrain.config.TrainConfig`), exactly as the native engine reads them. After
    ``strategy.start(...)``, :attr:`state` holds the global model, the server momentum and the SWA model.

    Attributes:
        config: the run's settings.
        augment: whether clients augment their batches (the CIFAR datasets).
        device: where the server aggregates.
        state: the server state (``None`` until the first ``configure_train``, which takes the initial arrays).
        timeout: seconds to wait for nodes to connect.
    """

    def __init__(self, config: TrainConfig, *, augment: bool = False, device: torch.device | str = "cpu",
                 state: ServerState | None = None, timeout: float = 600.0) -> None:
        self.config = config
        self.augment = augment
        self.device = torch.device(device)
        self.state = state
        self.timeout = timeout
        self._plan: RoundPlan | None = None
        self._nodes: dict[int, int] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """Plan round ``server_round - 1`` (:func:`~fedtrain.round.plan_round`) and address each sampled client's node."""
        if self.state is None:
            self.state = ServerState(round=server_round - 1, params=state_from_arrays(arrays, self.device))
        self._plan = plan_round(self.config, server_round - 1, augment=self.augment)
        if not set(self._plan.clients) <= set(self._nodes):
            self._nodes = client_nodes(grid, range(self.config.num_clients), timeout=self.timeout)
        return train_messages(self._plan, self.state.params, self.config, self._nodes)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """:func:`~fedtrain.round.aggregate_round` of the replies: the new global arrays and the round's metrics."""
        if self._plan is None or self._plan.round != server_round - 1 or self.state is None:
            raise ConfigError(f"aggregate_train for round {server_round} was called before configure_train for that round.")
        self.state, metrics = aggregate_round(self.state, self.config, self._plan, collect_updates(self._plan, replies, self.device))
        return arrays_from_state(self.state.params), MetricRecord(
            {"train_loss": metrics.train_loss, "lr": metrics.lr, "num-examples": metrics.num_samples,
             "swa_count": self.state.swa_count})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """No federated evaluation: the model (SWA once it exists) is evaluated centrally, as in the paper."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Nothing to aggregate (see :meth:`configure_evaluate`)."""
        return None

    def summary(self) -> None:
        """Log the algorithm and its settings."""
        c = self.config
        log(INFO, "\t├── %s%s: %d of %d clients per round, lr %g, E=%d, B=%d%s", c.algorithm, "+SWA" if c.swa else "",
            c.clients_per_round, c.num_clients, c.lr, c.local_epochs, c.batch_size,
            f", rho {c.rho}" if c.algorithm != "fedavg" else "")
        log(INFO, "\t└── server lr %g, server momentum %g", c.server_lr, c.server_momentum)

    @property
    def swa_arrays(self) -> ArrayRecord | None:
        """The SWA model as an ``ArrayRecord`` (``None`` before SWA has a model)."""
        return None if self.state is None or self.state.swa_params is None else arrays_from_state(self.state.swa_params)


