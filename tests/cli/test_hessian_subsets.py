"""`landscape hessian --subsets K`: mean +- standard error over K disjoint subsets in the JSON and the table; clean errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fedlandscape_cli import main
from tests.cli.test_hessian import checkpoint  # noqa: F401 (the tiny MLP checkpoint fixture)
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

QUICK = ["--samples", "100", "--batch-size", "50", "--top-k", "2", "--trace-matvecs", "9", "--no-density", "--device", "cpu"]


def test_subsets_report_the_mean_and_standard_error_and_the_first_subset_is_the_one_of_before(checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--subsets", "3", "--out", str(tmp_path / "h.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "h.json").read_text())
    assert report["subsets"]["count"] == 3 and len(report["subsets"]["eigenvalues"]) == 3
    assert len(report["eigenvalues_stderr"]) == 2 and report["trace"]["subset_stderr"] > 0
    assert report["config"]["subsets"] == 3
    assert "3 disjoint subsets of 100 samples" in result.output and "trace over subsets" in result.output
    one = json.loads(CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK]).stdout)
    assert report["subsets"]["eigenvalues"][0] == one["eigenvalues"] and "subsets" not in one


def test_subsets_beyond_the_split_are_one_paragraph_exit_1_and_no_file(checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--samples", "500", "--subsets", "3",
                                       "--out", str(tmp_path / "h.json")])
    assert result.exit_code == 1 and "do not fit in the synthetic train split" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "h.json").exists()
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--subsets", "0"])
    assert result.exit_code == 2
