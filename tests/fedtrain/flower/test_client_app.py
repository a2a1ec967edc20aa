"""fedtrain.flower.client_app: a node trains its clients exactly as the native engine does, and says which clients it holds."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from fedtrain.client import ClientConfig, client_update
from fedtrain.data import load_dataset
from fedtrain.errors import ConfigError
from fedtrain.flower.client_app import make_client_app, node_clients
from fedtrain.flower.records import TrainTask, arrays_from_state, task_content, update_from_content
from fedtrain.models import build_model
from fedtrain.round import client_generator
from fedtrain.run import round_data, run_inputs
from tests.fedtrain.flower.conftest import tiny


def _context(node_config) -> Context:
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def _native_data(config):
    dataset = load_dataset(config.dataset, config.data_dir)
    partition, model_kwargs = run_inputs(config, dataset)
    return round_data(config, dataset, partition, model_kwargs), model_kwargs


def test_node_clients_from_partition_id_or_a_list():
    assert node_clients({"partition-id": 3, "num-partitions": 6}) == (3,)
    assert node_clients({"clients": "5, 0,2"}) == (0, 2, 5)
    with pytest.raises(ConfigError, match="names no clients.*partition-id=K"):
        node_clients({"region": "eu"})


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "asam"])
def test_train_handler_returns_the_native_client_update_bit_for_bit(optimizer):
    config = tiny(algorithm={"sgd": "fedavg", "sam": "fedsam", "asam": "fedasam"}[optimizer])
    data, model_kwargs = _native_data(config)
    global_state = build_model(config.model, seed=11, **model_kwargs).state_dict()
    cfg = ClientConfig(lr=0.1, batch_size=16, optimizer=optimizer, rho=config.rho or 0.0, eta=config.eta, momentum=0.5)
    expected = client_update(data.worker, global_state, data.shards[2], cfg, client_generator(config.seed, 1, 2))

    message = Message(task_content(TrainTask(2, 1, cfg, config), global_state), dst_node_id=7, message_type=MessageType.TRAIN)
    reply = make_client_app()(message, _context({"partition-id": 2}))
    client, update = update_from_content(reply.content)
    assert client == 2 and update.num_examples == expected.num_examples == 40
    assert update.metrics == expected.metrics
    assert all(torch.equal(update.delta[k], expected.delta[k]) for k in expected.delta)


def test_train_for_a_client_the_node_does_not_hold_comes_back_as_a_config_error():
    config = tiny()
    _, model_kwargs = _native_data(config)
    state = build_model(config.model, seed=0, **model_kwargs).state_dict()
    message = Message(task_content(TrainTask(4, 0, ClientConfig(lr=0.1), config), state), dst_node_id=7, message_type=MessageType.TRAIN)
    reply = make_client_app()(message, _context({"partition-id": 1}))
    with pytest.raises(ConfigError, match="Client 4: .*holds clients \\[1\\]"):
        update_from_content(reply.content)


def test_a_diverging_client_reports_non_finite_loss():
    from fedtrain.client import NonFiniteLossError

    config = tiny()
    _, model_kwargs = _native_data(config)
    state = {k: torch.full_like(v, float("nan")) for k, v in build_model(config.model, seed=0, **model_kwargs).state_dict().items()}
    message = Message(task_content(TrainTask(0, 0, ClientConfig(lr=0.1), config), state), dst_node_id=7, message_type=MessageType.TRAIN)
    with pytest.raises(NonFiniteLossError, match="Client 0: The training loss became non-finite"):
        update_from_content(make_client_app()(message, _context({"partition-id": 0})).content)


def test_query_lists_the_nodes_clients():
    message = Message(RecordDict({"config": ConfigRecord({"what": "clients"})}), dst_node_id=7, message_type=MessageType.QUERY)
    reply = make_client_app()(message, _context({"clients": "1,4"}))
    assert list(reply.content["config"]["clients"]) == [1, 4]


def test_evaluate_gives_loss_and_accuracy_on_the_nodes_shards():
    from fedtrain.evaluate import evaluate_state

    config = tiny()
    data, model_kwargs = _native_data(config)
    state = build_model(config.model, seed=5, **model_kwargs).state_dict()
    shard = data.shards[3]
    expected = evaluate_state(data.worker, state, shard.normalize(shard.images[shard.indices]), shard.labels[shard.indices])
    content = RecordDict({"arrays": arrays_from_state(state), "config": task_content(TrainTask(3, 0, ClientConfig(lr=0.1), config), state)["config"]})
    reply = make_client_app()(Message(content, dst_node_id=7, message_type=MessageType.EVALUATE), _context({"partition-id": 3}))
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] == 40
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-12) and metrics["accuracy"] == pytest.approx(expected["accuracy"])
