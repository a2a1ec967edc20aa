"""`landscape sweep`: the grid end to end from the command line, its files and best setting; bad grids are one clean paragraph."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from tests.cli.test_train import _restore_threads  # noqa: F401 (autouse fixture: --threads changes this process's count)

TINY = """dataset: synthetic
model: mlp
model_kwargs: {hidden: [16]}
partition: iid
num_clients: 4
samples_per_client: 100
clients_per_round: 2
batch_size: 25
lr: 0.1
eval_every: 2
last_k: 2
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return str(path)


def test_a_sweep_writes_its_table_record_and_figure_and_prints_the_best(tmp_path, tiny):
    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["sweep", "--config", tiny, "--algorithm", "fedavg,fedsam", "--rho", "0.05,0.5",
                                       "--rounds", "4", "--validation", "300", "--eval-examples", "150", "--threads", "1",
                                       "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "sweep.json").read_text())
    best = record["best"]["per_algorithm"]["fedsam"]
    assert f"best fedsam: rho={best['rho']:g} lr=0.1: {100 * best['mean']:.2f} %" in result.output
    assert "best fedavg: lr=0.1:" in result.output
    assert "| fedsam | 0.05 | - | 0.1 | 1 |" in result.output  # the table, as sweep.md
    assert all((out / name).is_file() for name in ("sweep.md", "sweep.png", "sweep.pdf", "sweep-plan.json"))
    assert len(list((out / "runs").iterdir())) == 3 and record["settings"]["validation"] == 300
    assert record["settings"]["eval_examples"] == 150 and "150 of 300 held-out training examples" in result.output
    again = CliRunner().invoke(main, ["sweep", "--config", tiny, "--algorithm", "fedavg,fedsam", "--rho", "0.05,0.5",
                                      "--rounds", "4", "--validation", "300", "--eval-examples", "150", "--threads", "1",
                                      "--device", "cpu", "--out", str(out)])
    assert again.exit_code == 0 and again.output.count("done already, skipped") == 3
    assert json.loads((out / "sweep.json").read_text())["points"] == record["points"]


@pytest.mark.parametrize("args, message", [
    (["--rho", "-0.1,0.1", "--validation", "300"], "must be a finite number >= 0, got -0.1"),
    (["--rho", ",", "--validation", "300"], "is empty"),
    (["--rho", "0.1,abc", "--validation", "300"], "--rho takes numbers separated by commas"),
    (["--rho", "0.1"], "pass --validation N"),
    (["--rho", "0.1", "--validation", "1150"], "1150 of the 1200 training examples held out for validation"),
    (["--rho", "0.1", "--validation", "1200"], "must hold out between 1 and 1199 of the 1200"),
    (["--algorithm", "fedavg", "--rho", "0.1", "--validation", "300"], "a sweep of FedAvg alone has none"),
])
def test_bad_grids_are_one_clean_paragraph_and_write_nothing(tmp_path, tiny, args, message):
    result = CliRunner().invoke(main, ["sweep", "--config", tiny, "--rounds", "2", "--device", "cpu",
                                       "--out", str(tmp_path / "s"), *args])
    assert result.exit_code == 1 and message in result.output.replace("\n", " ").replace("  ", " ")
    assert "Traceback" not in result.output and not (tmp_path / "s").exists()
