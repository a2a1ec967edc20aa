"""`landscape hessian`: JSON report to stdout or --out, density plot, --device, clean errors, and the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.models import build_model
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

QUICK = ["--samples", "100", "--batch-size", "50", "--top-k", "2", "--trace-matvecs", "9", "--density-probes", "2", "--density-steps", "10"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    kwargs = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [4]}
    model = build_model("mlp", seed=0, **kwargs)
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=kwargs, weights=model.state_dict(), dataset="synthetic"), path)
    return path


def test_writes_the_json_report_and_the_plot(checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--out", str(tmp_path / "h.json"), "--plot", str(tmp_path / "esd.png")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "h.json").read_text())
    assert {"eigenvalues", "ratio", "residuals", "trace", "density", "hvps", "seconds", "config"} <= set(report)
    assert len(report["eigenvalues"]) == 2 and report["config"]["top_k"] == 2 and report["config"]["weights"] == "global"
    assert (tmp_path / "esd.png").read_bytes()[:4] == b"\x89PNG"
    assert "top-2 eigenvalues" in result.output and "all converged" in result.output


def test_json_goes_to_stdout_without_out(checkpoint):
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--no-trace", "--no-density"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trace"] is None and report["density"] is None and report["config"]["seeds"]["lanczos"] == 0


def test_bad_input_is_one_paragraph_exit_1_and_no_file(checkpoint, tmp_path):
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["hessian", str(foreign), "--out", str(tmp_path / "h.json")])
    assert result.exit_code == 1 and "could not be read as a checkpoint" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "h.json").exists()
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), "--no-density", "--plot", str(tmp_path / "e.png")])
    assert result.exit_code == 1 and "--plot draws the eigenvalue density" in result.output
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), "--weights", "swa"])
    assert result.exit_code == 1 and "has no SWA model" in result.output
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), "--top-k", "0"])
    assert result.exit_code == 2


def test_device_is_recorded_and_the_eigenvectors_file_holds_cpu_tensors(checkpoint, tmp_path, device):
    import torch

    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--no-density", "--device", str(device),
                                       "--out", str(tmp_path / "h.json"), "--eigenvectors-out", str(tmp_path / "v.pt")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "h.json").read_text())["config"]
    assert config["device"] == str(device) and config["device_used"]["device"].startswith(device.type)
    assert f"on {config['device_used']['device']}" in result.output
    vectors = torch.load(tmp_path / "v.pt", weights_only=True)["vectors"]
    assert all(t.device.type == "cpu" for v in vectors for t in v.values())


def test_cuda_on_a_machine_without_a_gpu_is_one_paragraph_exit_1_and_no_file(checkpoint, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for spec in ("cuda", "cuda:3"):
        result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--device", spec, "--out", str(tmp_path / "h.json")])
        assert result.exit_code == 1 and "asks for a GPU" in result.output and "--device cpu" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "h.json").exists()
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), "--device", "gpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_the_installed_console_script_runs(checkpoint, tmp_path):
    script = Path(sys.executable).with_name("landscape")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([str(script), "hessian", str(checkpoint), *QUICK, "--out", str(tmp_path / "h.json")],
                               capture_output=True, text=True, timeout=120, env=env)
    assert completed.returncode == 0, completed.stderr
    assert json.loads((tmp_path / "h.json").read_text())["hvps"]["total"] > 0


def test_choices_and_defaults_come_from_the_settings_record():
    from fedlandscape_cli.hessian import hessian
    from landscape.settings import HESSIAN_BACKENDS, SPLITS, TRACE_METHODS, WEIGHTS, HessianSettings

    options = {param.name: param for param in hessian.params}
    for name, choices in (("split", SPLITS), ("trace_method", TRACE_METHODS), ("weights", WEIGHTS), ("backend", HESSIAN_BACKENDS)):
        assert tuple(options[name].type.choices) == choices
    defaults = HessianSettings()
    renamed = {"samples": "num_examples"}
    for name, param in options.items():
        field = renamed.get(name, name)
        if hasattr(defaults, field):
            assert param.default == getattr(defaults, field), name
