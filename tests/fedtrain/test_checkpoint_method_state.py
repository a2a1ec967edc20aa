"""A method's client and server state in checkpoints: round trip, old files without them, refused malformed or non-finite states."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from fedtrain.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fedtrain.errors import CheckpointError
from fedtrain.run import _server_state
from tests.fedtrain.test_checkpoint import _checkpoint


def _with_state(method_state, client_states) -> Checkpoint:
    ckpt = _checkpoint()
    return replace(ckpt, state={"method_state": method_state, "client_states": client_states})


def test_nested_method_states_round_trip_exactly_and_become_the_server_state(tmp_path):
    c = {"fc.weight": torch.randn(3, 2), "fc.bias": torch.randn(3)}
    ckpt = _with_state({"c": c, "count": 3, "note": "x"}, {"7": {"c": {k: v * 2 for k, v in c.items()}}, "0": {"seen": torch.tensor(1)}})
    state = _server_state(load_checkpoint(save_checkpoint(ckpt, tmp_path / "c.pt")))
    assert torch.equal(state.method_state["c"]["fc.weight"], c["fc.weight"]) and state.method_state["count"] == 3
    assert set(state.client_states) == {0, 7}  # client ids are ints again
    assert torch.equal(state.client_states[7]["c"]["fc.bias"], c["fc.bias"] * 2)


def test_a_checkpoint_without_method_state_loads_with_empty_states(tmp_path):
    state = _server_state(load_checkpoint(save_checkpoint(_checkpoint(), tmp_path / "c.pt")))
    assert state.method_state == {} and state.client_states == {}


@pytest.mark.parametrize("method_state, client_states, match", [
    ({"c": {"w": torch.tensor([float("nan")])}}, {}, r"method's server state hold non-finite values .* 'c\.w'"),
    ({}, {"3": {"c": torch.tensor([float("inf")])}}, r"method's client states hold non-finite values .* '3\.c'"),
    ({}, {"client3": {}}, r"state 'client_states' must be a mapping of client ids"),
    ({"a": {"b": {"c": {"d": {"e": 1}}}}}, {}, r"state 'method_state' must be a mapping \(at most 4 levels\)"),
    ([1, 2], {}, r"state 'method_state' must be a mapping"),
])
def test_malformed_or_non_finite_method_states_are_refused_naming_the_field(tmp_path, method_state, client_states, match):
    path = save_checkpoint(_with_state(method_state, client_states), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)
