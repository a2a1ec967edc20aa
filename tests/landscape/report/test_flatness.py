"""The flatness report of a set of runs: per model, the measures of the analysis and the gap between train and test
accuracy (checked by an independent evaluation), the correlations over the models, and the files written."""

from __future__ import annotations

import json

import pytest
import torch

from fedtrain.checkpoint import load_checkpoint
from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.errors import ConfigError
from fedtrain.run import train
from landscape.report.flatness import find_runs, flatness_report
from landscape.settings import HessianSettings, MeasureSettings
from tests.fedtrain.test_run import tiny
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for i, (algorithm, lr) in enumerate([("fedavg", 0.1), ("fedsam", 0.1), ("fedavg", 0.02)]):
        train(tiny(algorithm=algorithm, lr=lr, rounds=4, eval_examples=50), root / "runs" / f"r{i}")
    return root


def test_every_model_gets_every_measure_its_gap_and_the_correlations(runs, tmp_path):
    found = find_runs([runs])
    assert [p.name for p in found] == ["r0", "r1", "r2"]
    result = flatness_report(found, tmp_path / "out", hessian=HessianSettings(num_examples=60, batch_size=60, device="cpu"),
                             measures=MeasureSettings(ascent_steps=3, average_samples=4, trace_matvecs=6), train_examples=100,
                             permutations=200)
    assert len(result["models"]) == 3 and len(result["correlations"]) == 2 * 9
    row = result["models"][0]
    # the gap from an independent evaluation of the final model
    model = load_checkpoint(found[0] / "checkpoints" / "final.pt").build_model()
    dataset = load_dataset("synthetic")
    x, y = evaluation_tensors(dataset, "train", 100, 0)
    tx, ty = evaluation_tensors(dataset, "test", 50, 3)
    with torch.no_grad():
        train_acc = float((model.eval()(x).argmax(1) == y).double().mean())
        test_acc = float((model(tx).argmax(1) == ty).double().mean())
    assert row["train_accuracy"] == pytest.approx(train_acc) and row["accuracy"] == pytest.approx(test_acc)
    assert row["gap"] == pytest.approx(train_acc - test_acc)
    assert {"lambda_max", "adaptive_worst", "average", "ggn_lambda_max", "fisher_lambda_max"} <= set(row)
    assert row["costs"]["products"]["lambda-max"] > 0
    saved = json.loads((tmp_path / "out" / "flatness.json").read_text())
    assert saved["settings"]["train_examples"] == 100 and "| model | test acc |" in (tmp_path / "out" / "table.md").read_text()
    assert "explains test accuracy" in (tmp_path / "out" / "correlations.md").read_text()
    # a second report over the same runs reuses the rows it kept (same settings, same checkpoints)
    again = flatness_report(found, tmp_path / "out", hessian=HessianSettings(num_examples=60, batch_size=60, device="cpu"),
                            measures=MeasureSettings(ascent_steps=3, average_samples=4, trace_matvecs=6), train_examples=100,
                            permutations=200)
    assert again["models"] == json.loads(json.dumps(result["models"])) and len(list((tmp_path / "out" / "models").iterdir())) == 3


def test_a_folder_without_a_finished_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="holds no finished run"):
        find_runs([tmp_path])


def test_progress_counts_models_up_to_the_number_of_runs_cached_ones_included(runs, tmp_path):
    events = []
    settings = dict(hessian=HessianSettings(num_examples=30, batch_size=30, device="cpu"),
                    measures=MeasureSettings(measures=("lambda-max",)), train_examples=50, permutations=50)
    for _ in range(2):  # the second report takes every row from its cache and still reports them
        flatness_report(find_runs([runs]), tmp_path / "out", progress=events.append, **settings)
    for report in (events[:4], events[4:]):
        assert [(e.stage, e.unit, e.done, e.total) for e in report] == [("flatness", "models", i, 3) for i in range(4)]
        assert report[-1].finished
