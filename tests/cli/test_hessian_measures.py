"""`landscape hessian --measures`: every flatness measure in the JSON next to the eigenvalues, the same numbers as the
library on the same subset, and one-paragraph errors for a measure option without --measures, an unknown measure and
the PyHessian backend."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import load_checkpoint
from fedtrain.data import evaluation_tensors, load_dataset
from landscape.hessian.analysis import analyze_model
from landscape.settings import MEASURES, HessianSettings, MeasureSettings
from tests.cli.test_hessian import checkpoint  # noqa: F401 (fixture)
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

FAST = ["--samples", "60", "--batch-size", "30", "--top-k", "1", "--no-trace", "--no-density", "--trace-matvecs", "6",
        "--ascent-steps", "3", "--average-samples", "4", "--device", "cpu"]


def test_all_measures_join_the_report_with_their_costs_and_equal_the_librarys(checkpoint, tmp_path):  # noqa: F811
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *FAST, "--measures", "all", "--rho", "0.1",
                                       "--out", str(tmp_path / "h.json")])
    assert result.exit_code == 0, result.output
    measures = json.loads((tmp_path / "h.json").read_text())["measures"]
    assert measures["settings"]["measures"] == list(MEASURES) and measures["settings"]["rho"] == 0.1
    assert set(measures["seconds"]) == set(MEASURES) and measures["products"]["ggn"] > 0
    assert "adaptive_worst" in result.output and "fisher_lambda_max" in result.output
    model = load_checkpoint(checkpoint).build_model()
    inputs, labels = evaluation_tensors(load_dataset("synthetic"), "train", 60, 0)
    library = analyze_model(model, inputs, labels, HessianSettings(num_examples=60, batch_size=30, top_k=1, trace=False,
                                                                   density=False, device="cpu"),
                            measures=MeasureSettings(rho=0.1, ascent_steps=3, average_samples=4, trace_matvecs=6))
    assert library.measures["values"] == measures["values"]


def test_a_subset_of_measures_and_the_errors(checkpoint, tmp_path):  # noqa: F811
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *FAST, "--measures", "worst, average"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["measures"]["values"]) == {"worst", "average"}
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *FAST])
    assert result.exit_code == 1 and "--ascent-steps sets a flatness measure: add --measures" in result.output
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *FAST, "--measures", "flatness"])
    assert result.exit_code == 1 and "must be a comma-separated list of" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *FAST, "--measures", "worst", "--backend", "pyhessian"])
    assert result.exit_code == 1 and "need the fedlandscape backend" in result.output
