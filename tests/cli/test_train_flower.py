"""`landscape train --engine flower`: a Flower simulation (Ray) writes the native engine's run directory, numbers included."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from tests.cli.test_train import _restore_threads  # noqa: F401 (autouse fixture: --threads changes this process's count)
from tests.fedtrain.flower.conftest import assert_same_run

TINY = ["--dataset", "synthetic", "--model", "mlp", "--num-clients", "6", "--samples-per-client", "40",
        "--clients-per-round", "3", "--batch-size", "16", "--rounds", "4", "--eval-every", "2", "--threads", "1",
        "--device", "cpu", "--seed", "3", "--algorithm", "fedasam", "--swa", "--swa-start", "0.5", "--swa-c", "2"]


def invoke(*args):
    return CliRunner().invoke(main, ["train", *args], catch_exceptions=False)


def test_engine_flower_equals_engine_native_fedasam_swa(tmp_path):
    native = invoke(*TINY, "--out", str(tmp_path / "native"))
    flower = invoke(*TINY, "--engine", "flower", "--out", str(tmp_path / "flower"))
    assert native.exit_code == 0 and flower.exit_code == 0, flower.output
    assert_same_run(tmp_path / "native", tmp_path / "flower")
    a, b = json.loads(native.stdout), json.loads(flower.stdout)
    assert a["evaluated_model"] == b["evaluated_model"] == "swa" and a["final_accuracy"] == b["final_accuracy"]
    assert "round 4/4" in flower.stderr


def test_num_supernodes_needs_the_flower_engine(tmp_path):
    result = invoke(*TINY, "--num-supernodes", "6", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1 and "--num-supernodes goes with --engine flower" in result.output
    assert not (tmp_path / "run").exists()


def test_too_few_supernodes_is_one_paragraph(tmp_path):
    result = invoke(*TINY, "--engine", "flower", "--num-supernodes", "4", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1 and "num_supernodes (4) must be at least num_clients (6)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_engine_flower_without_flower_installed_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "flwr" or m.startswith(("flwr.", "fedtrain.flower."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flwr", None)  # `import flwr` now fails as if it were not installed
    result = invoke(*TINY, "--engine", "flower", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1 and "pip install 'fedlandscape[flower]'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
