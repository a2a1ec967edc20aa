"""What travels between the Flower server and its nodes: this toolkit's records as Flower's ``ArrayRecord``/``ConfigRecord``/``MetricRecord``.

A train message carries ``arrays`` (the global state dict) and ``config`` (the client index, the round, the
client's :class:`~fedtrain.client.ClientConfig` field by field, and the run's :class:`~fedtrain.config.TrainConfig`
as JSON, from which a node rebuilds its shard). A reply carries ``arrays`` (the client's delta ``w_k - w``),
``metrics`` (``num-examples``, Flower's weighting key, and the training loss), or, when the client refused,
``config`` with the error's type and message. Tensors cross as NumPy arrays of the same dtype, so a round
trip is exact (bit for bit).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedtrain.client import ClientConfig, ClientUpdate, NonFiniteLossError
from fedtrain.config import TrainConfig
from fedtrain.errors import CheckpointError, ConfigError, DataFormatError, DataNotFoundError, LandscapeError

__all__ = [
    "TrainTask",
    "arrays_from_state",
    "state_from_arrays",
    "task_content",
    "task_from_content",
    "update_content",
    "update_from_content",
    "error_content",
]

# The errors a node may report back, by name; anything else comes back as a plain LandscapeError.
_ERRORS: dict[str, type[LandscapeError]] = {
    cls.__name__: cls for cls in (ConfigError, CheckpointError, DataNotFoundError, DataFormatError, NonFiniteLossError)
}


@dataclasses.dataclass(frozen=True)
class TrainTask:
    """One client's work in one round, as a node receives it.

    Attributes:
        client: the client (partition) index ``k``.
        round: the round (0-indexed).
        client_config: the local optimiser of the round (the SWA cyclic learning rate already applied).
        train_config: the run's settings (data, partition, model, seed), from which the node rebuilds its shard.
    """

    client: int
    round: int
    client_config: ClientConfig
    train_config: TrainConfig


def arrays_from_state(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """A state dict as an ``ArrayRecord`` (CPU copies; names and order kept)."""
    return ArrayRecord({name: Array(t.detach().cpu().contiguous().numpy()) for name, t in state.items()})


def state_from_arrays(record: ArrayRecord, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The state dict an ``ArrayRecord`` holds, as tensors of their own dtype on ``device`` (not sharing the record's buffers)."""
    return {name: torch.from_numpy(array.numpy().copy()).to(device) for name, array in record.items()}


def task_content(task: TrainTask, global_state: Mapping[str, torch.Tensor]) -> RecordDict:
    """The content of the train message for ``task``."""
    config = ConfigRecord({
        "client": task.client,
        "round": task.round,
        "train-config": json.dumps(task.train_config.to_dict(), sort_keys=True),
        **{f"client-{f.name}": getattr(task.client_config, f.name) for f in dataclasses.fields(ClientConfig)},
    })
    return RecordDict({"arrays": arrays_from_state(global_state), "config": config})


def task_from_content(content: RecordDict, device: torch.device | str = "cpu") -> tuple[TrainTask, dict[str, torch.Tensor]]:
    """The task and the global state dict (on ``device``) of a train message.

    Raises:
        ConfigError: the message lacks a field of the task (a server of another version sent it).
    """
    try:
        config = content["config"]
        client_config = ClientConfig(**{f.name: config[f"client-{f.name}"] for f in dataclasses.fields(ClientConfig)})
        train_config = TrainConfig.from_dict(json.loads(str(config["train-config"])))
        task = TrainTask(client=int(config["client"]), round=int(config["round"]), client_config=client_config, train_config=train_config)
        arrays = content["arrays"]
    except KeyError as err:
        raise ConfigError(f"The train message lacks {err}; the server and the node run different versions of fedtrain.flower. "
                          "Install the same fedlandscape version on both.") from None
    return task, state_from_arrays(arrays, device)


def update_content(update: ClientUpdate, client: int) -> RecordDict:
    """The reply of a client that trained: its delta, ``num-examples`` and metrics."""
    metrics = MetricRecord({"num-examples": update.num_examples, "client": client,
                            **{name: float(value) for name, value in update.metrics.items()}})
    return RecordDict({"arrays": arrays_from_state(update.delta), "metrics": metrics})


def error_content(error: LandscapeError, client: int) -> RecordDict:
    """The reply of a client that refused or diverged: the error's type and its one-paragraph message."""
    return RecordDict({"config": ConfigRecord({"error-type": type(error).__name__, "error": str(error), "client": client})})


def update_from_content(content: RecordDict, device: torch.device | str = "cpu") -> tuple[int, ClientUpdate]:
    """The client index and its :class:`~fedtrain.client.ClientUpdate` (delta on ``device``) from a train reply.

    Raises:
        LandscapeError: the node reported an error (re-raised as its own type: ``NonFiniteLossError``,
            ``ConfigError``, ...), with the node's message.
    """
    if "metrics" not in content:
        config = content["config"]
        raise _ERRORS.get(str(config["error-type"]), LandscapeError)(f"Client {config['client']}: {config['error']}")
    metrics = dict(content["metrics"])
    client, num_examples = int(metrics.pop("client")), int(metrics.pop("num-examples"))
    delta = state_from_arrays(content["arrays"], device)
    return client, ClientUpdate(delta=delta, num_examples=num_examples, metrics={k: float(v) for k, v in metrics.items()})
