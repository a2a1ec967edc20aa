"""`landscape flatness`: the report files of a set of runs and the verdict line; a folder without runs is one paragraph."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fedlandscape_cli import main
from tests.landscape.report.test_flatness import runs  # noqa: F401 (fixture)
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)


def test_flatness_writes_the_report_and_says_which_measure_explains_accuracy(runs, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["flatness", str(runs), "--out", str(out), "--measures", "lambda-max,adaptive-worst",
                                       "--samples", "60", "--train-examples", "100", "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "flatness.json").read_text())
    assert len(report["models"]) == 3 and report["settings"]["measures"]["measures"] == ["lambda-max", "adaptive-worst"]
    assert "explains test accuracy here" in result.stdout and "fedsam alpha=0.5 seed=3: test" in result.stderr


def test_a_folder_without_runs_is_one_paragraph(tmp_path):
    result = CliRunner().invoke(main, ["flatness", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "holds no finished run" in result.output and "Traceback" not in result.output


def test_quiet_prints_nothing_on_stderr_but_still_the_verdict(runs, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["flatness", str(runs), "--out", str(out), "--measures", "lambda-max", "--samples", "30",
                                       "--train-examples", "50", "--device", "cpu", "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and "explains test accuracy here" in result.stdout
