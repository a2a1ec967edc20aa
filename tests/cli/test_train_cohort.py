"""`landscape train --cohort`: the flags reach the config, the summary records the mode run, bad values are one-line errors."""

import json

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from tests.cli.test_train import _restore_threads  # noqa: F401 (autouse fixture: --threads changes this process's count)

TINY = ["--dataset", "synthetic", "--model", "mlp", "--num-clients", "6", "--samples-per-client", "30",
        "--clients-per-round", "3", "--batch-size", "16", "--rounds", "2", "--eval-every", "2", "--threads", "1"]


def test_cohort_flags_are_recorded_in_the_config_and_the_mode_run_in_the_summary(tmp_path):
    result = CliRunner().invoke(main, ["train", *TINY, "--algorithm", "fedsam", "--cohort", "vmap", "--cohort-chunk", "2",
                                       "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["cohort"], config["cohort_chunk"], config["cohort_compile"]) == ("vmap", 2, False)
    summary = json.loads(result.stdout)
    assert summary["cohort_used"] == {"mode": "vmap", "max_chunk": 2, "compile": False, "unequal_steps": "none"}


def test_auto_runs_sequential_on_the_cpu(tmp_path):
    result = CliRunner().invoke(main, ["train", *TINY, "--device", "cpu", "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["cohort"] == "auto"
    assert json.loads(result.stdout)["cohort_used"]["mode"] == "sequential"


@pytest.mark.parametrize(("args", "message"), [
    (["--cohort", "gpu"], "Invalid value for '--cohort'"),
    (["--cohort-chunk", "-1"], "Invalid value for '--cohort-chunk'"),
])
def test_bad_cohort_flags_are_one_line_errors_without_traceback(tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", *TINY, *args, "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
