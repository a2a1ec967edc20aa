"""Hessian quantities over K disjoint seeded subsets: the subsets, K = 1 unchanged, the mean and s/sqrt(K), the dense oracle
per subset, progress over all subsets, and the errors."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.data import evaluation_tensors, load_dataset, subset_indices
from fedtrain.errors import ConfigError
from fedtrain.io import to_json
from fedtrain.models import build_model
from landscape.hessian.analysis import analyze_checkpoint, analyze_model, cross_entropy
from landscape.hessian.exact import dense_hessian
from landscape.hessian.subsets import combine_subsets, disjoint_subset_indices, evaluation_subsets, subset_settings
from landscape.settings import HessianSettings, settings_from_dict
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

MLP_KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [4]}
SMALL = HessianSettings(num_examples=60, batch_size=30, top_k=2, trace_matvecs=9, density_probes=2, density_steps=6, device="cpu")
# the keys of a report and of a settings record before subsets existed: K = 1 must write exactly these
REPORT_KEYS = ["eigenvalues", "ratio", "residuals", "converged", "multiplicity_verified", "trace", "density", "hvps", "seconds",
               "config", "errors"]
SETTINGS_KEYS = ["split", "num_examples", "batch_size", "top_k", "tol", "max_matvecs", "trace", "trace_method", "trace_matvecs",
                 "density", "density_probes", "density_steps", "seed", "weights", "backend", "device"]


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    model = build_model("mlp", seed=0, **MLP_KWARGS)
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=MLP_KWARGS, weights=model.state_dict(), dataset="synthetic"), path)
    return path


# --- the subsets ----------------------------------------------------------------------------------------------------

def test_subsets_are_disjoint_sorted_seeded_and_the_first_is_the_one_subset_of_before():
    subsets = disjoint_subset_indices(1000, 128, 5, seed=3)
    assert [len(s) for s in subsets] == [128] * 5
    assert all(torch.equal(s, s.sort().values) for s in subsets)
    assert len(torch.cat(subsets).unique()) == 5 * 128  # disjoint
    assert torch.equal(subsets[0], subset_indices(1000, 128, 3))
    again = disjoint_subset_indices(1000, 128, 5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(subsets, again))
    other = disjoint_subset_indices(1000, 128, 5, seed=4)
    assert not torch.equal(subsets[1], other[1])


def test_one_subset_follows_subset_indices_whole_split_included():
    assert torch.equal(disjoint_subset_indices(50, None, 1, seed=0)[0], torch.arange(50))
    assert torch.equal(disjoint_subset_indices(50, 80, 1, seed=0)[0], torch.arange(50))
    assert torch.equal(disjoint_subset_indices(50, 20, 1, seed=7)[0], subset_indices(50, 20, 7))


def test_subsets_filling_the_split_exactly_are_a_partition():
    subsets = disjoint_subset_indices(60, 20, 3, seed=1)
    assert torch.equal(torch.cat(subsets).sort().values, torch.arange(60))


@pytest.mark.parametrize(("num_examples", "count", "match"), [
    (300, 5, r"5 x 300 = 1,500 samples do not fit in the split of 1,000 samples.*at most 200"),
    (None, 2, r"all samples do not fit"),
    (10, 0, r"subsets \(--subsets\) must be an integer >= 1, got 0"),
])
def test_subsets_that_do_not_fit_are_refused(num_examples, count, match):
    with pytest.raises(ConfigError, match=match):
        disjoint_subset_indices(1000, num_examples, count, seed=0)


def test_evaluation_subsets_are_evaluation_tensors_of_each_subset():
    dataset = load_dataset("synthetic")
    data = evaluation_subsets(dataset, "train", 100, 3, seed=2)
    first = evaluation_tensors(dataset, "train", 100, 2)
    assert torch.equal(data[0][0], first[0]) and torch.equal(data[0][1], first[1])
    indices = disjoint_subset_indices(dataset.train_labels.numel(), 100, 3, seed=2)
    assert torch.equal(data[2][1], dataset.train_labels[indices[2]])
    with pytest.raises(ConfigError, match=r"the synthetic train split of 1,200 samples.*--samples of at most 240"):
        evaluation_subsets(dataset, "train", 500, 5, seed=0)


# --- the settings ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "match"), [
    ({"subsets": 0}, r"subsets must be >= 1 \(an integer, --subsets\), got 0"),
    ({"subsets": True}, r"subsets must be >= 1"),
    ({"subsets": 2.0}, r"subsets must be >= 1"),
    ({"subsets": 3, "num_examples": None}, r"subsets \(--subsets\) is 3 but num_examples is None.*--samples N"),
])
def test_settings_refuse_bad_subsets(values, match):
    with pytest.raises(ConfigError, match=match):
        HessianSettings(**values)


def test_settings_write_subsets_only_when_not_one():
    assert list(HessianSettings().to_dict()) == SETTINGS_KEYS  # plans and reports saved before it read the same
    assert HessianSettings(subsets=4).to_dict()["subsets"] == 4
    assert settings_from_dict(HessianSettings, HessianSettings(subsets=4).to_dict()) == HessianSettings(subsets=4)
    assert settings_from_dict(HessianSettings, HessianSettings().to_dict()).subsets == 1


def test_subset_settings_keep_subset_zero_and_give_later_subsets_their_own_seeds():
    settings = HessianSettings(subsets=3, seed=5)
    assert subset_settings(settings, 0) == HessianSettings(seed=5)
    later = [subset_settings(settings, j) for j in (1, 2)]
    assert len({s.seed for s in later} | {5}) == 3 and all(not s.density and s.subsets == 1 for s in later)
    assert subset_settings(settings, 1) == subset_settings(settings, 1)  # derived, not drawn


# --- the analysis ---------------------------------------------------------------------------------------------------

def test_one_subset_writes_the_report_of_before(checkpoint_path):
    report = analyze_checkpoint(checkpoint_path, SMALL).to_dict()
    assert list(report) == REPORT_KEYS
    assert "subsets" not in report["config"] and "subset_stderr" not in report["trace"]
    assert list(report["trace"]) == ["estimate", "stderr", "method", "num_matvecs"]


def test_subset_zero_of_k_is_bit_identical_to_the_one_subset_analysis(checkpoint_path):
    one = analyze_checkpoint(checkpoint_path, SMALL)
    many = analyze_checkpoint(checkpoint_path, HessianSettings(**{**SMALL.to_dict(), "subsets": 3}))
    per = many.subsets
    assert per["eigenvalues"][0] == one.eigenvalues  # exact equality of floats: the same products in the same order
    assert per["traces"][0] == one.trace["estimate"] and per["trace_stderrs"][0] == one.trace["stderr"]
    assert to_json(many.density) == to_json(one.density)  # the density is subset 0's
    assert per["eigenvalues"][1] != per["eigenvalues"][0]  # another subset, another Hessian
    assert many.config["subsets"] == 3 and many.config["num_examples"] == 60 and per["num_examples"] == 60
    assert json.loads(to_json(many.to_dict()))["subsets"]["count"] == 3  # JSON-able


def test_mean_and_stderr_are_the_hand_computed_ones(checkpoint_path):
    report = analyze_checkpoint(checkpoint_path, HessianSettings(**{**SMALL.to_dict(), "subsets": 4, "density": False}))
    per = report.subsets
    for i in range(2):
        values = [row[i] for row in per["eigenvalues"]]
        assert report.eigenvalues[i] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert report.eigenvalues_stderr[i] == pytest.approx(statistics.stdev(values) / math.sqrt(4), rel=1e-12)
    assert report.trace["estimate"] == pytest.approx(statistics.fmean(per["traces"]), rel=1e-12)
    assert report.trace["subset_stderr"] == pytest.approx(statistics.stdev(per["traces"]) / 2, rel=1e-12)
    assert report.trace["stderr"] == pytest.approx(math.sqrt(sum(s * s for s in per["trace_stderrs"])) / 4, rel=1e-12)
    assert report.hvps["total"] == sum(h["total"] for h in per["hvps"]) and report.trace["num_matvecs"] == 4 * 9


def test_each_subsets_eigenvalues_and_trace_match_its_dense_hessian():
    model = build_model("mlp", input_shape=(1, 2, 2), num_classes=3, hidden=(3,), seed=0).double()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(30, 1, 2, 2, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (30,), generator=generator)
    dim = sum(p.numel() for p in model.parameters())
    # Hutch++ with a sketch of dim vectors computes the trace exactly: the test checks the subset, not the estimator
    settings = HessianSettings(num_examples=10, subsets=3, batch_size=4, top_k=2, tol=1e-9, trace_matvecs=3 * dim,
                               density=False, seed=4, device="cpu")
    report = analyze_model(model, inputs, labels, settings)
    for j, indices in enumerate(disjoint_subset_indices(30, 10, 3, seed=4)):
        exact = dense_hessian(model, cross_entropy, [(inputs[indices], labels[indices])])
        top = torch.linalg.eigvalsh(exact).flip(0)[:2].tolist()
        assert report.subsets["eigenvalues"][j] == pytest.approx(top, rel=1e-7)
        assert report.subsets["traces"][j] == pytest.approx(float(torch.trace(exact)), rel=1e-9)
    pooled = torch.linalg.eigvalsh(dense_hessian(model, cross_entropy, [(inputs, labels)]))[-1]
    assert report.eigenvalues[0] != pytest.approx(float(pooled), rel=1e-7)  # the mean over subsets, not the pooled Hessian


def test_progress_is_one_stage_over_all_subsets(checkpoint_path):
    events = []
    report = analyze_checkpoint(checkpoint_path, HessianSettings(**{**SMALL.to_dict(), "subsets": 3}), progress=events.append)
    done = [e.done for e in events]
    assert done == sorted(done) and all(e.done <= e.total for e in events)
    assert [e.finished for e in events].count(True) == 1 and events[-1].done == report.hvps["total"]
    assert {e.detail.split(",")[0] for e in events} == {"subset 1/3", "subset 2/3", "subset 3/3"}


def test_subsets_refuse_one_subset_outputs_and_too_many_samples(checkpoint_path, tmp_path):
    settings = HessianSettings(**{**SMALL.to_dict(), "subsets": 3})
    with pytest.raises(ConfigError, match=r"eigenvectors.*belong to one data subset's Hessian.*--subsets 1"):
        analyze_checkpoint(checkpoint_path, settings, eigenvectors_out=tmp_path / "v.pt")
    assert not (tmp_path / "v.pt").exists()
    with pytest.raises(ConfigError, match=r"3 x 500 = 1,500 samples do not fit in the synthetic train split of 1,200"):
        analyze_checkpoint(checkpoint_path, HessianSettings(**{**settings.to_dict(), "num_examples": 500}))


def test_combine_needs_two_subsets_of_equal_width():
    row = {"eigenvalues": [1.0], "residuals": [0.0], "converged": [True], "trace": None, "density": None,
           "hvps": {"total": 1}, "seconds": {"total": 0.1}}
    with pytest.raises(ConfigError, match="at least two subsets"):
        combine_subsets([row], [0], 10)
    with pytest.raises(ConfigError, match="different numbers of eigenvalues"):
        combine_subsets([row, {**row, "eigenvalues": [1.0, 0.5]}], [0, 1], 10)


def test_the_ratio_error_is_the_spread_of_the_per_subset_ratios(checkpoint_path):
    report = analyze_checkpoint(checkpoint_path, HessianSettings(**{**SMALL.to_dict(), "subsets": 3, "density": False}))
    ratios = [row[0] / row[-1] for row in report.subsets["eigenvalues"]]
    assert report.subsets["ratios"] == pytest.approx(ratios, rel=1e-12)
    assert report.subsets["ratio_stderr"] == pytest.approx(statistics.stdev(ratios) / math.sqrt(3), rel=1e-12)
    assert report.ratio == pytest.approx(report.eigenvalues[0] / report.eigenvalues[-1], rel=1e-12)
