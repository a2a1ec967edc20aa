"""Progress on the long commands: plain lines on stderr in a log, nothing but errors with --quiet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.models import build_model
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

HESSIAN = ["--samples", "60", "--batch-size", "60", "--top-k", "1", "--trace-matvecs", "6", "--density-probes", "1", "--density-steps", "4"]
SURFACE = ["--steps", "3", "--samples", "30", "--split", "test", "--points-per-pass", "4", "--plot", "contour"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    kwargs = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [2]}
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=kwargs, weights=build_model("mlp", seed=0, **kwargs).state_dict(),
                               dataset="synthetic"), path)
    return path


def test_hessian_prints_planned_and_done_products_then_its_table(checkpoint):
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *HESSIAN])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert re.match(r"hessian 0/\d+ products  eigenvalues", lines[0])
    last = [line for line in lines if line.startswith("hessian ") and "products" in line][-1]
    total = json.loads(result.stdout)["hvps"]["total"]
    assert last.startswith(f"hessian {total}/{total} products  density") and "ETA 0:00" in last
    assert "top-1 eigenvalues" in result.stderr


def test_quiet_leaves_stderr_empty_but_keeps_the_result_and_the_errors(checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *HESSIAN, "--quiet"])
    assert result.exit_code == 0 and result.stderr == "" and len(json.loads(result.stdout)["eigenvalues"]) == 1
    result = CliRunner().invoke(main, ["plot-surface", str(checkpoint), *SURFACE, "--out", str(tmp_path / "s"), "-q"])
    assert result.exit_code == 0 and result.stderr == "" and json.loads(result.stdout)["surfaces"][0]["shape"] == [3, 3]
    result = CliRunner().invoke(main, ["hessian", str(tmp_path / "s" / "surface.npz"), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output and result.stdout == ""
    assert result.stderr.startswith(f"Error: {tmp_path / 's' / 'surface.npz'} could not be read as a") and result.stderr.count("\n") == 1


def test_plot_surface_prints_grid_points_per_pass(checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["plot-surface", str(checkpoint), *SURFACE, "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    counted = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("surface ")]
    assert counted[0] == "0/9" and counted[-1] == "9/9"
    assert "pass 3/3" in result.stderr


def test_train_quiet_prints_only_the_summary(tmp_path):
    from tests.cli.test_train import TINY

    result = CliRunner().invoke(main, ["train", *TINY, "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0 and result.stderr == "" and "final_accuracy" in json.loads(result.stdout)
    result = CliRunner().invoke(main, ["train", *TINY, "--out", str(tmp_path / "run"), "--quiet"])  # exists: an error
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")


def test_reproduce_and_figures_quiet_still_print_their_errors(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--preset", "smoke", "--out", str(tmp_path / "r"), "--device", "cuda:7", "--quiet"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and result.stdout == ""
    result = CliRunner().invoke(main, ["figures", str(tmp_path / "none"), "--out", str(tmp_path / "f"), "-q"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and result.stdout == ""
