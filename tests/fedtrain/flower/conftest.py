"""Fixtures of the Flower tests: tiny runs on synthetic data, and a Grid that delivers messages to the ClientApp in this process."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import torch
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from fedtrain.config import TrainConfig


def tiny(**changes) -> TrainConfig:
    """A run of seconds: 6 clients of synthetic data, an MLP, 3 of them per round."""
    base = dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, partition="dirichlet", alpha=0.5,
                num_clients=6, samples_per_client=40, clients_per_round=3, rounds=4, batch_size=16, lr=0.1,
                eval_every=2, last_k=2, seed=3, device="cpu")
    return TrainConfig(**{**base, **changes})


class LocalGrid(Grid):
    """Flower's Grid without a transport: node ``i`` (id ``100 + i``) holds client ``i`` and runs ``app`` here, in order.

    Flower 1.27 has no in-process simulation backend (only Ray); this grid runs the same ClientApp handlers
    on the same messages, for tests that check the apps' logic rather than Ray's transport.
    """

    def __init__(self, app: ClientApp, num_nodes: int, node_configs: dict[int, dict] | None = None) -> None:
        configs = node_configs or {}
        self.app = app
        self.contexts = {
            100 + i: Context(run_id=1, node_id=100 + i, node_config=configs.get(i, {"partition-id": i, "num-partitions": num_nodes}),
                             state=RecordDict(), run_config={})
            for i in range(num_nodes)
        }
        self.sent: list[Message] = []

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        self.sent += messages
        return [self.app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]

    # The rest of Grid's interface is the transport's, which this grid does not have.
    def set_run(self, run_id: int) -> None:
        raise NotImplementedError

    @property
    def run(self):
        raise NotImplementedError

    def create_message(self, *args, **kwargs):
        raise NotImplementedError

    def push_messages(self, messages):
        raise NotImplementedError

    def pull_messages(self, message_ids):
        raise NotImplementedError


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the Ray backend's one-CPU ClientApps run (the thread count changes CPU rounding)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def metrics_without_timing(run_dir) -> list[dict]:
    """The run's metrics lines without the fields that measure the machine."""
    import json

    from fedtrain.run import TIMING_FIELDS

    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a, b) -> None:
    """Two run directories hold the same run: final global and SWA weights bit for bit, metrics, partition and config."""
    from fedtrain.checkpoint import load_checkpoint

    ca, cb = load_checkpoint(a / "checkpoints" / "final.pt"), load_checkpoint(b / "checkpoints" / "final.pt")
    assert ca.round == cb.round and ca.swa_count == cb.swa_count
    assert all(torch.equal(ca.weights[k], cb.weights[k]) for k in ca.weights)
    assert (ca.swa_weights is None) == (cb.swa_weights is None)
    if ca.swa_weights is not None:
        assert all(torch.equal(ca.swa_weights[k], cb.swa_weights[k]) for k in ca.swa_weights)
    assert ca.state["server_momentum"] is None or all(
        torch.equal(ca.state["server_momentum"][k], cb.state["server_momentum"][k]) for k in ca.state["server_momentum"])
    assert metrics_without_timing(a) == metrics_without_timing(b)
    assert (a / "partition.json").read_text() == (b / "partition.json").read_text()
    assert (a / "config.json").read_text() == (b / "config.json").read_text()
