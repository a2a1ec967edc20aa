"""`landscape train` through click's CliRunner and the real console script."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import load_checkpoint

TINY = ["--dataset", "synthetic", "--model", "mlp", "--num-clients", "6", "--samples-per-client", "30",
        "--clients-per-round", "2", "--batch-size", "16", "--rounds", "4", "--eval-every", "2", "--threads", "1"]


@pytest.fixture(autouse=True, scope="module")
def _restore_threads():
    before = torch.get_num_threads()  # --threads sets torch's thread count in this process
    yield
    torch.set_num_threads(before)


def invoke(*args):
    return CliRunner().invoke(main, ["train", *args], catch_exceptions=False)


def test_train_prints_the_resolved_config_and_a_json_summary(tmp_path):
    result = invoke(*TINY, "--algorithm", "fedsam", "--rho", "0.05", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"final_accuracy", "last_k_mean_accuracy", "best_accuracy", "best_round", "wall_seconds", "rounds_per_second"} <= set(summary)
    assert "resolved config" in result.stderr and '"rho": 0.05' in result.stderr
    assert "round 4/4" in result.stderr  # plain progress lines when not a terminal
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["algorithm"] == "fedsam" and config["rho"] == 0.05 and config["rounds"] == 4
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt").round == 4


def test_config_file_and_flags_override_the_preset(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('lr = 0.2\nrounds = 3\n')
    result = invoke("--preset", "quick", "--config", str(cfg), *TINY[:-6], "--rounds", "2", "--threads", "1", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["preset"], config["lr"], config["rounds"], config["dataset"]) == ("quick", 0.2, 2, "synthetic")


def test_resume_of_a_finished_run_returns_its_summary(tmp_path):
    assert invoke(*TINY, "--out", str(tmp_path / "run")).exit_code == 0
    first = json.loads((tmp_path / "run" / "summary.json").read_text())
    result = invoke("--resume", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["final_accuracy"] == first["final_accuracy"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rho", "-1"], "Invalid value for '--rho'"),
        (["--algorithm", "fedprox"], "Invalid value for '--algorithm'"),
        (["--clients-per-round", "50"], "cannot exceed num_clients"),
        (["--swa", "--swa-start", "2.5"], "swa_start"),
    ],
)
def test_bad_flags_give_one_line_errors_without_traceback(tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", *TINY, *args, "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_existing_directory_and_missing_out_are_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    result = CliRunner().invoke(main, ["train", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "already exists and is not empty" in result.output
    result = CliRunner().invoke(main, ["train", *TINY])
    assert result.exit_code == 1 and "Pass --out RUN_DIR" in result.output


def test_a_foreign_init_from_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, bad)
    result = CliRunner().invoke(main, ["train", *TINY, "--swa", "--init-from", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "is not a fedlandscape checkpoint" in result.output and "Traceback" not in result.output


def test_the_installed_script_trains_and_reports_errors(tmp_path):
    script = str(Path(sys.executable).with_name("landscape"))
    ok = subprocess.run([script, "train", *TINY, "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rounds"] == 4
    bad = subprocess.run([script, "train", *TINY, "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Error:" in bad.stderr and "Traceback" not in bad.stderr


def test_device_and_deterministic_are_recorded_and_the_device_may_change_on_resume(tmp_path):
    result = invoke(*TINY, "--device", "cpu", "--deterministic", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["device"], config["deterministic"]) == ("cpu", True)
    used = json.loads(result.stdout)["device_used"]
    assert used["device"] == "cpu" and used["deterministic_algorithms"] is True
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt").state["device_used"] == used
    resumed = invoke("--resume", str(tmp_path / "run"), "--device", "auto", "--no-deterministic")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["device"] == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is what a machine without a GPU says")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_a_gpu_on_a_machine_without_one_is_a_one_paragraph_error(tmp_path, spec):
    result = CliRunner().invoke(main, ["train", *TINY, "--device", spec, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output[result.output.index("Error:"):].strip()  # after the resolved config line
    assert f"--device {spec} asks for a GPU" in error and "--device cpu" in error
    assert "\n" not in error and not (tmp_path / "run").exists()


def test_a_malformed_device_is_refused_with_the_accepted_forms(tmp_path):
    result = CliRunner().invoke(main, ["train", *TINY, "--device", "gpu", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "must be auto, cpu, cuda or cuda:N" in result.output and "Traceback" not in result.output


def test_validation_holds_out_training_examples_and_evaluates_on_them(tmp_path):
    result = invoke(*TINY, "--partition", "iid", "--validation", "200", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["eval_split"] == "validation" and summary["validation"] == 200
    assert json.loads((tmp_path / "run" / "config.json").read_text())["validation"] == 200
    too_many = CliRunner().invoke(main, ["train", *TINY, "--validation", "1190", "--out", str(tmp_path / "x")])
    assert too_many.exit_code == 1 and "held out for validation (--validation)" in too_many.output
    assert "Traceback" not in too_many.output and not (tmp_path / "x").exists()
