"""FedLESAM's server state and FedGloSS's and FedSpeed's server and client states survive a crash: the resumed run equals an uninterrupted one bit for bit."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from fedtrain.checkpoint import load_checkpoint, save_checkpoint
from fedtrain.config import TrainConfig
from fedtrain.round import federated_round
from fedtrain.run import TIMING_FIELDS, train
from tests.fedtrain.test_run import _one_thread  # noqa: F401 (autouse fixture: one torch thread, restored)


class Crash(Exception):
    """The process dying mid-run (in round 3, after checkpoints were written)."""


def _config(algorithm: str) -> TrainConfig:
    return TrainConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, num_clients=6, samples_per_client=30,
                       clients_per_round=3, batch_size=10, rounds=5, lr=0.1, weight_decay=1e-3, algorithm=algorithm,
                       eval_every=1, checkpoint_every=2, seed=7)


def _metrics(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


@pytest.mark.parametrize("algorithm, server_keys, client_keys", [
    ("fedlesam", {"global_update"}, set()),
    ("fedgloss", {"sigma", "pseudo_grad"}, {"dual"}),
    ("fedspeed", {"h_sum"}, {"h"}),
])
def test_a_run_crashed_after_a_checkpoint_and_resumed_ends_bit_identical(tmp_path, algorithm, server_keys, client_keys):
    config = _config(algorithm)

    def crash_in_round_3(state, cfg, data, round_index):
        if round_index == 3:
            raise Crash
        return federated_round(state, cfg, data, round_index)

    crashed, full = tmp_path / "crashed", tmp_path / "full"
    with pytest.raises(Crash):
        train(config, crashed, round_fn=crash_in_round_3)
    saved = load_checkpoint(crashed / "checkpoints" / "latest.pt")
    assert 0 < saved.round < 5 and set(saved.state["method_state"]) == server_keys  # the state the resume continues from
    assert all(set(s) == client_keys for s in saved.state.get("client_states", {}).values())
    assert bool(saved.state.get("client_states")) == bool(client_keys)
    amnesiac = tmp_path / "amnesiac"  # the same crash, resumed from a checkpoint stripped of the method's states
    shutil.copytree(crashed, amnesiac)
    stripped = {k: v for k, v in saved.state.items() if k not in ("method_state", "client_states")}
    save_checkpoint(dataclasses.replace(saved, state=stripped), amnesiac / "checkpoints" / "latest.pt")
    train(config, crashed, resume=True)
    train(config, amnesiac, resume=True)
    train(config, full)

    a, b = load_checkpoint(crashed / "checkpoints" / "final.pt"), load_checkpoint(full / "checkpoints" / "final.pt")
    assert a.round == b.round == 5
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in b.weights)
    assert _metrics(crashed) == _metrics(full) and len(_metrics(full)) == 5
    lost = load_checkpoint(amnesiac / "checkpoints" / "final.pt")
    assert not all(torch.equal(lost.weights[k], b.weights[k]) for k in b.weights)  # so the state is what kept it exact
