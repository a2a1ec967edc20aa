"""`landscape clients` end to end on a tiny run: JSON, plane files and figures; --from redraws; bad inputs are one paragraph, exit 1, no file."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from tests.landscape.federated.cases import tiny_run
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

QUICK = ["--clients", "3", "--samples-per-client", "6", "--top-k", "1", "--trace-matvecs", "6", "--plane-steps", "3",
         "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("clients-cli"))


def test_writes_json_planes_and_figures_and_redraws_from_saved_results(run_dir, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["clients", str(run_dir / "checkpoints" / "final.pt"), *QUICK, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "fedavg-alpha0.json").read_text())
    assert data["format"] == "fedlandscape.clients" and len(data["clients"]) == 3
    assert data["settings"]["samples_per_client"] == 6 and data["versions"]["torch_threads"] == "1"
    assert "fedavg-alpha0: 3 of 4 clients x 6 samples; lambda_max at the global model" in result.output
    assert "products and" in result.output and "per client" in result.output
    for name in ("fedavg-alpha0-plane-pooled.npz", "clients_lambda.png", "clients_local_global.png", "clients_drift.png",
                 "fedavg-alpha0-plane.png"):
        assert (out / name).is_file(), name
    again = CliRunner().invoke(main, ["clients", "--from", str(out / "fedavg-alpha0.json"), "--out", str(tmp_path / "re")])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "re" / "clients_lambda.png").is_file() and (tmp_path / "re" / "fedavg-alpha0-plane.png").is_file()


def test_bad_inputs_are_one_paragraph_exit_1_and_no_file(run_dir, tmp_path):
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["clients", str(foreign), "--out", str(out)])
    assert result.exit_code == 1 and "could not be read as a checkpoint" in result.output
    assert "Traceback" not in result.output and not out.exists()
    not_ours = tmp_path / "x.json"
    not_ours.write_text("{}")
    result = CliRunner().invoke(main, ["clients", "--from", str(not_ours), "--out", str(out)])
    assert result.exit_code == 1 and "is not a `landscape clients` result" in result.output and not out.exists()
    result = CliRunner().invoke(main, ["clients", str(run_dir / "checkpoints" / "final.pt"), "--name", "a", "--name", "b", "--out", str(out)])
    assert result.exit_code == 1 and "--name was given 2 times for 1 checkpoints" in result.output
    result = CliRunner().invoke(main, ["clients", str(run_dir / "checkpoints" / "final.pt"), "--clients", "0", "--out", str(out)])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["clients", "--out", str(out)])
    assert result.exit_code == 1 and "at least one checkpoint" in result.output


def test_a_name_of_dots_stays_inside_out_and_quiet_is_silent(run_dir, tmp_path):
    out = tmp_path / "deep" / "out"
    args = ["clients", str(run_dir / "checkpoints" / "final.pt"), *QUICK, "--no-plane", "--out", str(out), "--name", ".."]
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and (out / "__.json").is_file() and not (tmp_path / "deep" / ".json").exists()
