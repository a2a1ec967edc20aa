"""fedtrain.flower.records: the toolkit's records as Flower records, exactly (bit for bit), and errors that come back as their own type."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord

from fedtrain.client import ClientConfig, ClientUpdate, NonFiniteLossError
from fedtrain.errors import ConfigError, LandscapeError
from fedtrain.flower.records import (
    TrainTask,
    arrays_from_state,
    error_content,
    state_from_arrays,
    task_content,
    task_from_content,
    update_content,
    update_from_content,
)
from tests.fedtrain.flower.conftest import tiny


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g, dtype=torch.float64),
            "bn.num_batches_tracked": torch.tensor(7)}


def test_state_round_trip_is_exact_and_keeps_dtypes_and_order():
    state = _state()
    record = arrays_from_state(state)
    assert isinstance(record, ArrayRecord) and list(record) == list(state)
    back = state_from_arrays(record)
    assert list(back) == list(state)
    for name, value in state.items():
        assert back[name].dtype == value.dtype and torch.equal(back[name], value)
    back["w"].add_(1.0)  # the decoded tensors do not share the record's buffers
    assert torch.equal(state_from_arrays(record)["w"], state["w"])


def test_task_round_trip():
    task = TrainTask(client=4, round=2, client_config=ClientConfig(lr=0.05, optimizer="asam", rho=0.7, eta=0.2, momentum=0.9),
                     train_config=tiny(algorithm="fedasam", swa=True))
    decoded, global_state = task_from_content(task_content(task, _state()))
    assert decoded == task
    assert all(torch.equal(global_state[k], v) for k, v in _state().items())


def test_task_without_a_field_is_a_config_error():
    content = task_content(TrainTask(0, 0, ClientConfig(lr=0.1), tiny()), _state())
    del content["config"]["client-rho"]
    with pytest.raises(ConfigError, match="lacks 'client-rho'.*same fedlandscape version"):
        task_from_content(content)


def test_update_round_trip():
    update = ClientUpdate(delta=_state(), num_examples=40, metrics={"train_loss": 1.25, "steps": 3.0})
    client, back = update_from_content(update_content(update, client=5))
    assert client == 5 and back.num_examples == 40 and back.metrics == update.metrics
    assert all(torch.equal(back.delta[k], v) for k, v in update.delta.items())


@pytest.mark.parametrize("error", [NonFiniteLossError("loss nan"), ConfigError("bad"), LandscapeError("other")])
def test_a_clients_error_is_raised_again_as_its_own_type(error):
    with pytest.raises(type(error), match=f"Client 2: {error}") as caught:
        update_from_content(error_content(error, client=2))
    assert type(caught.value) is type(error)
