"""Sharpness tracking during training: the exact lambda_max of the global model at the tracked rounds, no change to
the training numbers, warm starts that agree with cold starts, and a resume that continues warm and bit-identical."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from fedtrain.checkpoint import load_checkpoint
from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.run import TIMING_FIELDS, train
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.exact import dense_hessian
from landscape.hessian.tracking import SharpnessTracker
from landscape.settings import TrackingSettings
from tests.fedtrain.test_run import tiny
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

SETTINGS = TrackingSettings(every=2, num_examples=64, batch_size=40, tol=1e-8, max_matvecs=300, trace=True, trace_matvecs=12)


def _tracked(settings=SETTINGS, **changes):
    config = tiny(observers={"sharpness": settings.to_dict()}, **changes)
    return config, SharpnessTracker.for_run(config)


def _metrics(run):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS and k != "sharpness_seconds"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tracking_logs_the_exact_lambda_max_and_does_not_change_the_training_weights(tmp_path):
    config, tracker = _tracked(checkpoint_rounds=(4,))
    train(config, tmp_path / "tracked", observers=[tracker])
    train(tiny(checkpoint_rounds=(4,)), tmp_path / "plain")
    a = load_checkpoint(tmp_path / "tracked" / "checkpoints" / "final.pt")
    b = load_checkpoint(tmp_path / "plain" / "checkpoints" / "final.pt")
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in b.weights)
    rows = _metrics(tmp_path / "tracked")
    assert [r["round"] for r in rows] == [2, 4, 6, 8]
    assert [r["sharpness_warm_start"] for r in rows] == [False, True, True, True]
    inputs, labels = evaluation_tensors(load_dataset("synthetic"), "train", 64, 0)
    for row in rows[1::2]:  # rounds 4 and 8: the dense Hessian of the kept checkpoints
        ckpt = load_checkpoint(tmp_path / "tracked" / "checkpoints" / ("round_00004.pt" if row["round"] == 4 else "final.pt"))
        model = ckpt.build_model("global")
        hessian = dense_hessian(model, cross_entropy, [(inputs[:40], labels[:40]), (inputs[40:], labels[40:])])
        # the run's float32 model against the float64 oracle: float32 rounding, not the solver, sets the 1e-5
        assert row["sharpness_lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(hessian)[-1]), rel=1e-5)
        assert abs(row["sharpness_trace"] - float(hessian.trace())) <= 4 * row["sharpness_trace_stderr"] + 1e-4
        assert row["sharpness_converged"] and row["sharpness_products"] >= 1


def test_warm_starts_agree_with_cold_starts(tmp_path):
    config, tracker = _tracked()
    train(config, tmp_path / "warm", observers=[tracker])
    cold_settings = dataclasses.replace(SETTINGS, warm_start=False)
    config, tracker = _tracked(cold_settings)
    train(config, tmp_path / "cold", observers=[tracker])
    warm, cold = _metrics(tmp_path / "warm"), _metrics(tmp_path / "cold")
    assert not any(r["sharpness_warm_start"] for r in cold)
    for w, c in zip(warm, cold):
        assert w["sharpness_lambda_max"] == pytest.approx(c["sharpness_lambda_max"], rel=1e-6)


def test_a_resumed_run_continues_warm_from_the_saved_eigenvector_and_logs_the_same_numbers(tmp_path):
    config, tracker = _tracked(checkpoint_rounds=(4,))
    train(config, tmp_path / "full", observers=[tracker])
    saved = load_checkpoint(tmp_path / "full" / "checkpoints" / "round_00004.pt").state["observers"]["sharpness"]["vector"]
    assert saved.dtype == torch.float64 and torch.linalg.vector_norm(saved) == pytest.approx(1.0)
    killed = tmp_path / "killed"  # the run as it was when killed after round 4
    shutil.copytree(tmp_path / "full", killed)
    shutil.rmtree(killed / "checkpoints")
    (killed / "checkpoints").mkdir()
    shutil.copy(tmp_path / "full" / "checkpoints" / "round_00004.pt", killed / "checkpoints" / "latest.pt")
    (killed / "summary.json").unlink()
    resumed_config = json.loads((killed / "config.json").read_text())
    from fedtrain.config import TrainConfig

    train(None, killed, resume=True, observers=[SharpnessTracker.for_run(TrainConfig.from_dict(resumed_config))])
    assert _metrics(killed) == _metrics(tmp_path / "full")  # products included: the same warm starts
