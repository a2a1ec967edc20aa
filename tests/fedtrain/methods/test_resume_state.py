"""A FedGAMMA run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one: its control variates survive."""

import os
import shutil
import subprocess

import torch

from fedtrain.checkpoint import load_checkpoint
from tests.fedtrain.test_resume import kill_after, landscape, metrics
from tests.fedtrain.test_run import train_interrupted

ARGS = [
    "--dataset", "synthetic", "--model", "mlp", "--num-clients", "6", "--samples-per-client", "40",
    "--clients-per-round", "2", "--batch-size", "16", "--rounds", "30", "--lr", "0.05", "--algorithm", "fedgamma",
    "--eval-every", "10", "--checkpoint-every", "3", "--seed", "4", "--threads", "1",
]


def _states_equal(a: dict, b: dict) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a.keys() == b.keys() and all(_states_equal(a[k], b[k]) for k in a)


def _without_method_state(path):
    raw = torch.load(path, weights_only=True)
    raw["state"].pop("method_state"), raw["state"].pop("client_states")
    torch.save(raw, path)


def test_a_fedgamma_run_killed_and_resumed_equals_the_uninterrupted_run_and_needs_its_state(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, killed, stateless = tmp_path / "full", tmp_path / "killed", tmp_path / "stateless"
    interrupted_at = kill_after(ARGS, killed, 12, env)
    assert 12 <= interrupted_at < 30 and not (killed / "summary.json").exists()
    shutil.copytree(killed, stateless)
    _without_method_state(stateless / "checkpoints" / "latest.pt")  # the control: a resume that lost c and the c_i

    for run in (killed, stateless):
        resumed = subprocess.run(landscape("--resume", str(run)), env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
    uninterrupted = subprocess.run(landscape(*ARGS, "--out", str(full)), env=env, capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    a, b = (load_checkpoint(run / "checkpoints" / "final.pt") for run in (killed, full))
    assert a.round == b.round == 30
    assert _states_equal(a.weights, b.weights) and metrics(killed) == metrics(full)
    assert _states_equal(a.state["method_state"], b.state["method_state"])
    assert _states_equal(a.state["client_states"], b.state["client_states"])
    assert set(b.state["client_states"]) == {str(k) for k in range(6)}  # every client trained at least once, each has its c_i
    assert any(t.abs().sum() > 0 for t in b.state["method_state"]["c"].values())
    lost = load_checkpoint(stateless / "checkpoints" / "final.pt")
    assert not _states_equal(lost.weights, b.weights)  # without the saved state the resume would not be exact


def test_a_mofedsam_run_interrupted_and_resumed_in_process_keeps_its_direction_exactly(tmp_path):
    from fedtrain.config import TrainConfig
    from fedtrain.run import train

    config = TrainConfig(dataset="synthetic", model="mlp", num_clients=5, samples_per_client=24, clients_per_round=2,
                         batch_size=8, rounds=6, lr=0.05, algorithm="mofedsam", method_args={"alpha": 0.5},
                         eval_every=3, checkpoint_every=1, seed=3, device="cpu")

    train(config, tmp_path / "full", threads=1)
    train_interrupted(config, tmp_path / "resumed", after_round=3, threads=1)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt").state["method_state"]["direction"]
    train(None, tmp_path / "resumed", resume=True, threads=1)
    a, b = (load_checkpoint(tmp_path / run / "checkpoints" / "final.pt") for run in ("resumed", "full"))
    assert _states_equal(a.weights, b.weights) and _states_equal(a.state["method_state"], b.state["method_state"])
    assert "client_states" not in b.state  # MoFedSAM keeps no client state
