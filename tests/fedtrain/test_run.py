"""train(): the run directory, checkpoints that rebuild the model, SWA branching, divergence, refusals."""

import json

import pytest
import torch

from fedtrain import round as round_module
from fedtrain.checkpoint import load_checkpoint
from fedtrain.client import NonFiniteLossError
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.io import read_json
from fedtrain.run import TIMING_FIELDS, train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: one thread avoids OpenMP spin-waiting on a shared 2-core machine. Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**changes) -> TrainConfig:
    base = dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, partition="dirichlet", alpha=0.5,
                num_clients=6, samples_per_client=40, clients_per_round=3, rounds=8, batch_size=16, lr=0.1,
                eval_every=2, last_k=2, seed=3)
    return TrainConfig(**{**base, **changes})


class _Interrupted(Exception):
    """What :func:`train_interrupted`'s progress callback raises: the run stops as a kill after that round would."""


def train_interrupted(config, out, *, after_round: int, **train_kwargs) -> None:
    """Train ``config`` into ``out`` and stop it once the progress event of round ``after_round`` is reported."""

    def stop(event):
        if event["round"] == after_round:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        train(config, out, progress=stop, **train_kwargs)


def metrics_without_timing(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines]


def test_a_run_writes_config_partition_metrics_summary_and_self_describing_checkpoints(tmp_path):
    events = []
    summary = train(tiny(algorithm="fedsam"), tmp_path / "run", progress=events.append)
    run = tmp_path / "run"
    assert read_json(run / "config.json")["rho"] == 0.1  # resolved, not None
    assert read_json(run / "partition.json")["hash"] == summary["partition_hash"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [2, 4, 6, 8]
    assert set(metrics[0]) >= {"round", "train_loss", "test_loss", "test_accuracy", "lr", "seconds", "samples_per_s"}
    assert summary["final_accuracy"] == metrics[-1]["test_accuracy"]
    assert summary["last_k_mean_accuracy"] == pytest.approx((metrics[-1]["test_accuracy"] + metrics[-2]["test_accuracy"]) / 2)
    assert summary["best_accuracy"] == max(m["test_accuracy"] for m in metrics)
    assert read_json(run / "summary.json") == json.loads(json.dumps(summary))
    assert [e["round"] for e in events] == list(range(1, 9))

    ckpt = load_checkpoint(run / "checkpoints" / "final.pt")
    assert ckpt.round == 8 and ckpt.dataset == "synthetic" and ckpt.partition["hash"] == summary["partition_hash"]
    model = ckpt.build_model()  # needs nothing but the file
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    assert (run / "checkpoints" / "round_00006.pt").is_file()  # the SWA start (0.75 * 8) is always kept
    assert torch.equal(load_checkpoint(run / "checkpoints" / "latest.pt").weights["net.1.weight"], ckpt.weights["net.1.weight"])


def test_every_algorithm_sees_the_same_clients_and_they_train_differently(tmp_path):
    clients, finals = {}, {}
    for algorithm in ("fedavg", "fedsam", "fedasam"):
        events = []
        train(tiny(algorithm=algorithm, rounds=4), tmp_path / algorithm, progress=events.append)
        clients[algorithm] = [e["clients"] for e in events]
        finals[algorithm] = load_checkpoint(tmp_path / algorithm / "checkpoints" / "final.pt").weights["net.1.weight"]
    assert clients["fedavg"] == clients["fedsam"] == clients["fedasam"]
    assert not torch.equal(finals["fedavg"], finals["fedsam"]) and not torch.equal(finals["fedsam"], finals["fedasam"])


def test_swa_run_evaluates_the_swa_model_once_it_exists(tmp_path):
    train(tiny(swa=True, swa_start=0.5, swa_c=2, rounds=8, eval_every=1), tmp_path / "swa")
    metrics = metrics_without_timing(tmp_path / "swa")
    assert [m["model"] for m in metrics] == ["global"] * 5 + ["swa"] * 3  # first collection after round 6 (0-indexed 5)
    assert [m["swa_count"] for m in metrics][-3:] == [1, 1, 2]
    assert [round(m["lr"], 6) for m in metrics][4:] == [0.05005, 0.0001, 0.05005, 0.0001]
    ckpt = load_checkpoint(tmp_path / "swa" / "checkpoints" / "final.pt")
    assert ckpt.has_swa and ckpt.swa_count == 2


def test_branching_an_swa_run_off_a_plain_run_equals_training_it_from_scratch(tmp_path):
    plain = tiny(rounds=8, swa_start=0.5, server_momentum=0.5)
    train(plain, tmp_path / "plain")
    branch_point = tmp_path / "plain" / "checkpoints" / "round_00004.pt"
    swa = plain.replace(swa=True, swa_c=2)
    train(swa, tmp_path / "branched", init_from=branch_point)
    train(swa, tmp_path / "scratch")
    a = load_checkpoint(tmp_path / "branched" / "checkpoints" / "final.pt")
    b = load_checkpoint(tmp_path / "scratch" / "checkpoints" / "final.pt")
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in b.weights)
    assert a.swa_count == b.swa_count == 2 and all(torch.equal(a.swa_weights[k], b.swa_weights[k]) for k in b.swa_weights)
    assert metrics_without_timing(tmp_path / "branched") == metrics_without_timing(tmp_path / "scratch")


def test_branching_refuses_a_different_config_or_a_late_checkpoint(tmp_path):
    plain = tiny(rounds=8, swa_start=0.5)
    train(plain, tmp_path / "plain")
    with pytest.raises(ConfigError, match=r"different configuration: lr: 0\.2 vs 0\.1"):
        train(plain.replace(swa=True, lr=0.2), tmp_path / "b1", init_from=tmp_path / "plain" / "checkpoints" / "round_00004.pt")
    with pytest.raises(ConfigError, match="at a round <= the SWA start"):
        train(plain.replace(swa=True), tmp_path / "b2", init_from=tmp_path / "plain" / "checkpoints" / "final.pt")


def test_an_existing_run_directory_is_refused_unless_overwrite(tmp_path):
    train(tiny(rounds=2), tmp_path / "run")
    with pytest.raises(ConfigError, match="already exists and is not empty.*--resume.*--overwrite"):
        train(tiny(rounds=2), tmp_path / "run")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    train(tiny(rounds=3), tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt").round == 3


def test_resume_refuses_changed_settings_and_a_directory_without_a_run(tmp_path):
    train(tiny(rounds=2), tmp_path / "run")
    with pytest.raises(ConfigError, match="different settings: rounds"):
        train(tiny(rounds=5), tmp_path / "run", resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(None, tmp_path / "empty", resume=True)


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = round_module.client_update

    def poisoned(worker, global_state, shard, cfg, generator):
        update = real(worker, global_state, shard, cfg, generator)
        if poisoned.calls >= 9:  # round 4 (3 clients per round)
            update.delta["net.1.weight"].fill_(float("inf"))
        poisoned.calls += 1
        return update

    poisoned.calls = 0
    monkeypatch.setattr(round_module, "client_update", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"stopped at round 4; the last good checkpoint is .*latest\.pt \(after round 3\)"):
        train(tiny(checkpoint_every=1), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt").round == 3
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_huge_learning_rate_gives_a_clear_non_finite_error(tmp_path):
    with pytest.raises(NonFiniteLossError, match="Lower the learning rate"):
        train(tiny(lr=1e30), tmp_path / "run")
