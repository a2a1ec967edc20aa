"""The Flower ClientApp: a node trains the clients it holds with :func:`fedtrain.client.client_update` and reports their deltas.

A node (a Flower SuperNode) holds the clients its ``node_config`` names: ``partition-id`` (one client, as
Flower's simulation engine and ``flower-supernode --node-config "partition-id=K"`` set it) or ``clients``
(several, ``"clients='0,5,9'"``). Its shards are the run's partition (:func:`fedtrain.run.run_inputs`) of the
dataset the train message's :class:`~fedtrain.config.TrainConfig` names, read from that node's disk.

Handlers (Flower's message API, ``(Message, Context) -> Message``):

* ``query``: the node's clients, so the server can send client ``k``'s work to the node that holds it;
* ``train``: one client's local FedAvg/FedSAM/FedASAM update from the global weights, with the generator
  :func:`fedtrain.round.client_generator` derives from ``(seed, round, client)``: the same update, bit for bit,
  as the native engine computes on the same device;
* ``evaluate``: loss and accuracy of the received weights on the node's own shards (for Flower users'
  federated evaluation; this toolkit's runs evaluate on the server's test set).

A node's refusals and divergences come back as the error's type and message, which the server re-raises.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedtrain._numerics import run_numerics
from fedtrain.client import client_update
from fedtrain.config import TrainConfig
from fedtrain.data import load_dataset
from fedtrain.device import resolve_device
from fedtrain.errors import ConfigError, LandscapeError
from fedtrain.evaluate import evaluate_state
from fedtrain.flower.records import error_content, state_from_arrays, task_from_content, update_content
from fedtrain.round import RoundData, client_generator
from fedtrain.run import round_data, run_inputs

__all__ = ["app", "node_clients", "node_data"]


def node_clients(node_config: Mapping[str, object]) -> tuple[int, ...]:
    """The clients a node holds, from its ``node_config``: ``clients`` (comma-separated) or ``partition-id``.

    Raises:
        ConfigError: neither key, or a value that is not a list of client indices.
    """
    try:
        if "clients" in node_config:
            return tuple(sorted(int(k) for k in str(node_config["clients"]).split(",") if k.strip()))
        if "partition-id" in node_config:
            return (int(node_config["partition-id"]),)
    except ValueError:
        pass
    raise ConfigError(
        f"This Flower node's node_config {dict(node_config)!r} names no clients. Start the SuperNode with "
        "--node-config \"partition-id=K\" (one client) or --node-config \"clients='K1,K2'\" (several)."
    )


@functools.lru_cache(maxsize=1)
def node_data(config_json: str, device: str) -> RoundData:
    """The run's shards and scratch model on ``device``, built once per node process for a run's settings.

    Cached because a node trains many rounds of one run and the dataset is read from disk; the key is the
    run's settings as JSON, so another run on the same node rebuilds it.
    """
    config = TrainConfig.from_dict(json.loads(config_json))
    dataset = load_dataset(config.dataset, config.data_dir, test=config.validation == 0)  # nodes only train: as the server, no test split with a validation one
    partition, model_kwargs = run_inputs(config, dataset)
    return round_data(config, dataset.to(torch.device(device)), partition, model_kwargs)


def _train(message: Message, context: Context) -> Message:
    """Train the message's client from its global weights; reply with the delta and ``num-examples``."""
    client = int(message.content["config"]["client"])
    try:
        config_json, device = _run_of(message)
        task, global_state = task_from_content(message.content, device)
        _check_holds(task.client, context)
        data = node_data(config_json, str(device))
        with run_numerics(device, deterministic=task.train_config.deterministic):
            update = client_update(
                data.worker, global_state, data.shards[task.client], task.client_config,
                client_generator(task.train_config.seed, task.round, task.client),
            )
    except LandscapeError as err:
        return Message(error_content(err, client), reply_to=message)
    return Message(update_content(update, task.client), reply_to=message)


def _run_of(message: Message) -> tuple[str, torch.device]:
    """The run's settings (JSON) a message carries and the device they name on this node."""
    config_json = str(message.content["config"]["train-config"])
    return config_json, resolve_device(TrainConfig.from_dict(json.loads(config_json)).device)


def _check_holds(client: int, context: Context) -> None:
    held = node_clients(context.node_config)
    if client not in held:
        raise ConfigError(f"Client {client}'s work reached a node that holds clients {list(held)}; the server's map of "
                          "nodes is stale. Restart the run.")


def _query(message: Message, context: Context) -> Message:
    """The clients this node holds (``clients``: a list of indices)."""
    try:
        clients = list(node_clients(context.node_config))
    except ConfigError as err:
        return Message(error_content(err, -1), reply_to=message)
    return Message(RecordDict({"config": ConfigRecord({"clients": clients})}), reply_to=message)


def _evaluate(message: Message, context: Context) -> Message:
    """Loss and accuracy of the message's weights on this node's shards (sample-weighted over its clients)."""
    config_json, device = _run_of(message)
    data = node_data(config_json, str(device))
    state = state_from_arrays(message.content["arrays"], device)
    total, loss, correct = 0, 0.0, 0.0
    for k in node_clients(context.node_config):
        shard = data.shards[k]
        rows = shard.indices if shard.indices is not None else torch.arange(shard.num_examples, device=device)
        result = evaluate_state(data.worker, state, shard.normalize(shard.images[rows]), shard.labels[rows])
        total += shard.num_examples
        loss += result["loss"] * shard.num_examples
        correct += result["accuracy"] * shard.num_examples
    n = max(total, 1)
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": total, "loss": loss / n, "accuracy": correct / n})}),
                   reply_to=message)


def make_client_app() -> ClientApp:
    """A ClientApp with this module's ``train``, ``evaluate`` and ``query`` handlers."""
    client_app = ClientApp()
    client_app.train()(_train)
    client_app.evaluate()(_evaluate)
    client_app.query()(_query)
    return client_app


app = make_client_app()  # what `flwr run` and the simulation load (flower_app/pyproject.toml names it)
