"""The results table's standard errors over disjoint data subsets: lambda_1_stderr, ratio_stderr and trace_stderr."""

from __future__ import annotations

import json
import math

import pytest
import torch

import landscape.plots.paper as paper
from fedtrain.config import TrainConfig
from fedtrain.errors import DataFormatError
from fedtrain.io import to_json, write_json
from fedtrain.models import build_model
from landscape.hessian.analysis import analyze_model
from landscape.settings import HessianSettings
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def reports():
    """The Hessian reports of a tiny model on 3 disjoint subsets of 10 samples with two seeds, and on one subset."""
    model = build_model("mlp", input_shape=(1, 2, 2), num_classes=3, hidden=(3,), seed=0).double()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(40, 1, 2, 2, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (40,), generator=generator)
    settings = HessianSettings(num_examples=10, batch_size=10, top_k=2, trace_matvecs=9, density=False, device="cpu")
    three = [analyze_model(model, inputs, labels, HessianSettings(**{**settings.to_dict(), "subsets": 3, "seed": s})) for s in (0, 1)]
    one = analyze_model(model, inputs[:10], labels[:10], settings)
    return [json.loads(to_json(r.to_dict())) for r in (*three, one)]


def _run(folder, seed, hessian, algorithm="fedavg"):
    (folder / "analysis").mkdir(parents=True)
    write_json(folder / "config.json", TrainConfig(dataset="synthetic", model="mlp", rounds=10, algorithm=algorithm, seed=seed).to_dict())
    write_json(folder / "summary.json", {"last_k_mean_accuracy": 0.5, "last_k": 1})
    (folder / "metrics.jsonl").write_text(json.dumps({"round": 10, "test_accuracy": 0.5}) + "\n")
    write_json(folder / "analysis" / "hessian.json", hessian)


def test_one_seed_rows_carry_the_errors_over_its_subsets_and_the_table_prints_them(tmp_path, reports):
    many, _, one = reports
    _run(tmp_path / "avg", 0, many)
    _run(tmp_path / "sam", 0, one, algorithm="fedsam")
    fedavg, fedsam = paper.results_table(paper.collect_runs([tmp_path]))
    assert fedavg["lambda_1_stderr"] == pytest.approx(many["eigenvalues_stderr"][0], rel=1e-12)
    assert fedavg["ratio_stderr"] == pytest.approx(many["subsets"]["ratio_stderr"], rel=1e-12)
    assert fedavg["trace_stderr"] == pytest.approx(many["trace"]["subset_stderr"], rel=1e-12)
    assert fedavg["trace_stderr"] != pytest.approx(many["trace"]["stderr"])  # not the estimator's error
    assert fedsam["lambda_1_stderr"] is None and fedsam["ratio_stderr"] is None
    assert fedsam["trace_stderr"] == pytest.approx(one["trace"]["stderr"], rel=1e-12)  # one subset: Hutch++'s error
    md, _ = paper.write_results_table([fedavg, fedsam], tmp_path)
    text = md.read_text()
    assert "λ_1 stderr, data" in text and f"| {fedavg['lambda_1_stderr']:.3f} |" in text and "| n/a |" in text


def test_several_seeds_combine_their_subset_errors_as_the_error_of_the_mean(tmp_path, reports):
    first, second, _ = reports
    _run(tmp_path / "s0", 0, first)
    _run(tmp_path / "s1", 1, second)
    (row,) = paper.results_table(paper.collect_runs([tmp_path]))
    expected = math.hypot(first["eigenvalues_stderr"][0], second["eigenvalues_stderr"][0]) / 2
    assert row["lambda_1_stderr"] == pytest.approx(expected, rel=1e-12)
    spread = abs(first["trace"]["estimate"] - second["trace"]["estimate"]) / math.sqrt(2)  # std of two values
    assert row["trace_stderr"] == pytest.approx(spread, rel=1e-12)  # several seeds: the spread over seeds, as before


def test_a_negative_subset_error_in_a_saved_report_is_refused(tmp_path, reports):
    _run(tmp_path / "avg", 0, {**reports[0], "eigenvalues_stderr": [-1.0, 0.1]})
    with pytest.raises(DataFormatError, match="eigenvalues_stderr"):
        paper.collect_runs([tmp_path])
