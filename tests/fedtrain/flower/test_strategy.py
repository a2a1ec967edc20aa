"""fedtrain.flower.strategy: Flower's strategy hooks over the native round functions give the native numbers (in-process grid)."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord

from fedtrain.client import ClientUpdate
from fedtrain.data import load_dataset
from fedtrain.errors import ConfigError, LandscapeError
from fedtrain.flower.client_app import make_client_app
from fedtrain.flower.records import arrays_from_state, state_from_arrays
from fedtrain.flower.server_app import flower_round_fn
from fedtrain.flower.strategy import FedLandscapeStrategy, client_nodes, collect_updates
from fedtrain.models import build_model
from fedtrain._seeds import derive_seed
from fedtrain.round import federated_round, plan_round
from fedtrain.run import round_data, run_inputs, train
from fedtrain.server import ServerState
from tests.fedtrain.flower.conftest import LocalGrid, assert_same_run, tiny


@pytest.mark.parametrize("changes", [dict(algorithm="fedavg"), dict(algorithm="fedsam", server_momentum=0.5, server_lr=0.8)],
                         ids=["fedavg", "fedsam-server-momentum"])
def test_run_with_the_flower_round_equals_the_native_run(tmp_path, changes):
    config = tiny(**changes)
    train(config, tmp_path / "native")
    grid = LocalGrid(make_client_app(), config.num_clients)
    train(config, tmp_path / "flower", round_fn=flower_round_fn(grid))
    assert_same_run(tmp_path / "native", tmp_path / "flower")
    assert sum(m.metadata.message_type == "train" for m in grid.sent) == config.rounds * config.clients_per_round


def test_strategy_start_equals_the_native_rounds_fedasam_swa():
    config = tiny(algorithm="fedasam", swa=True, swa_start=0.5, swa_c=2, server_momentum=0.5, rounds=4)
    dataset = load_dataset(config.dataset)
    partition, model_kwargs = run_inputs(config, dataset)
    data = round_data(config, dataset, partition, model_kwargs)
    initial = build_model(config.model, seed=derive_seed(config.seed, "model-init"), **model_kwargs).state_dict()
    native = ServerState(round=0, params={k: v.clone() for k, v in initial.items()})
    for r in range(config.rounds):
        native, _ = federated_round(native, config, data, r)

    strategy = FedLandscapeStrategy(config)
    result = strategy.start(LocalGrid(make_client_app(), config.num_clients), arrays_from_state(initial), num_rounds=config.rounds)
    final = state_from_arrays(result.arrays)
    assert all(torch.equal(final[k], native.params[k]) for k in native.params)
    assert strategy.state.swa_count == native.swa_count >= 1
    swa = state_from_arrays(strategy.swa_arrays)
    assert all(torch.equal(swa[k], native.swa_params[k]) for k in native.swa_params)
    assert all(torch.equal(strategy.state.momentum[k], native.momentum[k]) for k in native.momentum)
    assert sorted(result.train_metrics_clientapp) == [1, 2, 3, 4]


def test_client_nodes_maps_each_client_to_its_node_and_refuses_missing_clients():
    grid = LocalGrid(make_client_app(), 3, node_configs={0: {"clients": "0,1"}, 1: {"partition-id": 2}, 2: {"partition-id": 3}})
    assert client_nodes(grid, range(4), timeout=0) == {0: 100, 1: 100, 2: 101, 3: 102}
    with pytest.raises(ConfigError, match=r"No Flower node holds client\(s\) \[4, 5\].*num-supernodes >= num_clients"):
        client_nodes(grid, range(6), timeout=0)


def test_two_nodes_holding_one_client_are_refused():
    grid = LocalGrid(make_client_app(), 2, node_configs={0: {"partition-id": 1}, 1: {"partition-id": 1}})
    with pytest.raises(ConfigError, match="Client 1 is held by two Flower nodes"):
        client_nodes(grid, [1], timeout=0)


def test_a_run_needs_a_node_for_every_client(tmp_path):
    config = tiny()
    grid = LocalGrid(make_client_app(), config.num_clients - 2)
    with pytest.raises(ConfigError, match="No Flower node holds client"):
        train(config, tmp_path / "run", round_fn=flower_round_fn(grid, connect_timeout=0))


def test_collect_updates_orders_by_plan_and_refuses_missing_replies():
    from fedtrain.flower.records import update_content
    from flwr.app import Message, MessageType, RecordDict

    config = tiny()
    plan = plan_round(config, 0)
    def reply(k):
        asked = Message(RecordDict(), dst_node_id=100 + k, message_type=MessageType.TRAIN)
        return Message(update_content(ClientUpdate({"w": torch.full((2,), float(k))}, k + 1, {"train_loss": 0.5}), k), reply_to=asked)
    updates = collect_updates(plan, [reply(k) for k in reversed(plan.clients)])
    assert [u.num_examples for u in updates] == [k + 1 for k in plan.clients]
    with pytest.raises(LandscapeError, match=rf"Client\(s\) \[{plan.clients[0]}\] sent no reply in round 1"):
        collect_updates(plan, [reply(k) for k in plan.clients[1:]])


def test_aggregate_train_before_configure_train_is_refused():
    with pytest.raises(ConfigError, match="before configure_train"):
        FedLandscapeStrategy(tiny()).aggregate_train(1, [])


def test_no_federated_evaluation():
    strategy = FedLandscapeStrategy(tiny())
    assert list(strategy.configure_evaluate(1, ArrayRecord(), ConfigRecord(), None)) == []
    assert strategy.aggregate_evaluate(1, []) is None
