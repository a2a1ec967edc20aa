"""fedtrain.flower.app: what `flwr run flower_app` loads, and how its run config becomes a run."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedtrain.config import PRESET_RHO
from fedtrain.errors import ConfigError
from fedtrain.flower.app import run_request
from fedtrain.run import train
from tests.fedtrain.flower.conftest import tiny

APP = Path(__file__).resolve().parents[3] / "flower_app" / "pyproject.toml"


def test_the_app_folder_names_our_apps_and_its_run_config_resolves():
    spec = tomllib.loads(APP.read_text())["tool"]["flwr"]["app"]
    kinds = {"serverapp": ServerApp, "clientapp": ClientApp}
    for key, kind in kinds.items():
        module, attr = spec["components"][key].split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), kind)
    request = run_request(spec["config"])
    assert request.config.preset == "quick" and request.out == "runs/flower" and not request.resume


def test_run_config_layers_preset_file_and_settings(tmp_path):
    (tmp_path / "run.yaml").write_text("rounds: 7\nalgorithm: fedsam\n")
    request = run_request({"out": str(tmp_path / "r"), "preset": "quick", "config-file": str(tmp_path / "run.yaml"),
                           "algorithm": "fedasam", "overwrite": True})
    # the algorithm from the settings wins over the file's, and its radius is the preset's tuned one
    assert (request.config.rounds, request.config.algorithm, request.config.rho) == (7, "fedasam", PRESET_RHO["quick"]["fedasam"])
    assert request.config.num_clients == 100 and request.overwrite
    assert run_request({"out": "x", "preset": "", "config-file": "", "algorithm": ""}).config.algorithm == "fedavg"


def test_run_config_without_out_or_with_a_bad_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="needs out, the run directory"):
        run_request({"preset": "quick"})
    with pytest.raises(ConfigError, match="Unknown algorithm 'fedprox'"):
        run_request({"out": "x", "algorithm": "fedprox"})


def test_resume_takes_the_saved_settings(tmp_path):
    train(tiny(rounds=2), tmp_path / "run")
    request = run_request({"out": str(tmp_path / "run"), "resume": True, "preset": "quick", "algorithm": ""})
    assert request.resume and request.config == tiny(rounds=2)
