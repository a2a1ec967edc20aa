"""`landscape partition` and the console script itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from fedlandscape_cli import main

SCRIPT = Path(sys.executable).with_name("landscape")


def test_partition_prints_summary_and_writes_artifact_and_plot(tmp_path):
    out, plot = tmp_path / "p.json", tmp_path / "p.png"
    result = CliRunner().invoke(main, ["partition", "--dataset", "synthetic", "--alpha", "0", "--num-clients", "20",
                                       "--seed", "1", "--out", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "20 clients" in result.output and "classes per client   mean 1.00  min 1  max 1" in result.output
    raw = json.loads(out.read_text())
    assert raw["spec"]["alpha"] == 0 and raw["hash"] in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_partition_plot_without_suffix_writes_png_and_pdf(tmp_path):
    result = CliRunner().invoke(main, ["partition", "--dataset", "synthetic", "--scheme", "iid", "--num-clients", "5",
                                       "--plot", str(tmp_path / "dist")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dist.png").is_file() and (tmp_path / "dist.pdf").is_file()


def test_bad_input_is_one_clean_paragraph(tmp_path):
    runner = CliRunner()
    missing_alpha = runner.invoke(main, ["partition", "--dataset", "synthetic"])
    assert missing_alpha.exit_code == 1 and "needs --alpha" in missing_alpha.output
    assert "Traceback" not in missing_alpha.output
    no_cifar = runner.invoke(main, ["partition", "--dataset", "cifar10", "--alpha", "0", "--data-dir", str(tmp_path)])
    assert no_cifar.exit_code == 1 and "data_batch_1" in no_cifar.output
    negative = runner.invoke(main, ["partition", "--dataset", "synthetic", "--alpha", "-1"])
    assert negative.exit_code == 2 and "-1" in negative.output
    assert not list(tmp_path.iterdir())


def test_console_script_help_and_version_are_quick_and_clean():
    help_run = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert help_run.returncode == 0 and help_run.stderr == ""
    assert "partition" in help_run.stdout
    version = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "0.1.0" in version.stdout


def test_console_script_reports_errors_without_traceback(tmp_path):
    run = subprocess.run([str(SCRIPT), "partition", "--dataset", "mnist", "--alpha", "0", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Could not find the mnist IDX files" in run.stderr and "Traceback" not in run.stderr
