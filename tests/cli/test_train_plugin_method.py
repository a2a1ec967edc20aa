"""A method in the user's own file, outside the package: it trains, checkpoints, resumes exactly, and is analysed without it."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import load_checkpoint
from fedtrain.config import TrainConfig
from tests.cli.test_train import TINY, _restore_threads  # noqa: F401 (autouse fixture)
from tests.fedtrain.test_run import train_interrupted

EXAMPLE = Path(__file__).parents[2] / "examples" / "fedprox.py"
ARGS = [*TINY, "--rounds", "6", "--checkpoint-every", "1", "--seed", "2", "--algorithm", "myfile:FedProx", "--method-arg", "mu=0.5"]


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """tmp_path/user/myfile.py, the README's example, as the working directory; sys.path and sys.modules restored after."""
    folder = tmp_path / "user"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "myfile.py")
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield folder
    sys.modules.pop("myfile", None)


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


def _forget_the_method(folder: Path) -> None:
    (folder / "myfile.py").rename(folder.parent / "elsewhere.py")
    sys.modules.pop("myfile", None)
    importlib.invalidate_caches()


def test_a_users_method_trains_resumes_exactly_and_is_analysed_without_being_importable(user_dir, tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    result = _invoke("train", *ARGS, "--out", str(full))
    assert result.exit_code == 0, result.output
    config = json.loads((full / "config.json").read_text())
    assert config["algorithm"] == "myfile:FedProx" and config["method_args"] == {"mu": "0.5"}
    assert json.loads((full / "summary.json").read_text())["method_settings"] == {"mu": 0.5}
    final = load_checkpoint(full / "checkpoints" / "final.pt")
    assert final.config["algorithm"] == "myfile:FedProx"  # the checkpoint records the import path

    # the proximal term acts: FedAvg on the same run ends elsewhere
    fedavg = _invoke("train", *[a for a in ARGS if a not in ("myfile:FedProx", "--method-arg", "mu=0.5", "--algorithm")],
                     "--algorithm", "fedavg", "--out", str(tmp_path / "fedavg"))
    assert fedavg.exit_code == 0, fedavg.output
    plain = load_checkpoint(tmp_path / "fedavg" / "checkpoints" / "final.pt")
    assert not all(torch.equal(final.weights[k], plain.weights[k]) for k in final.weights)

    # interrupted after round 3 (latest.pt written), then resumed from the command line: bit-identical
    train_interrupted(TrainConfig.from_dict({**config, "device": "cpu"}), resumed, after_round=3, threads=1)
    assert load_checkpoint(resumed / "checkpoints" / "latest.pt").round == 3
    result = _invoke("train", "--resume", str(resumed))
    assert result.exit_code == 0, result.output
    again = load_checkpoint(resumed / "checkpoints" / "final.pt")
    assert all(torch.equal(again.weights[k], final.weights[k]) for k in final.weights)

    # once the method cannot be imported: resuming is one clear paragraph, analysing the weights still works
    _forget_the_method(user_dir)
    latest = (resumed / "checkpoints" / "latest.pt").read_bytes()
    (resumed / "checkpoints" / "final.pt").unlink()
    result = _invoke("train", "--resume", str(resumed))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--algorithm 'myfile:FedProx': no module named 'myfile' was found" in result.output
    assert (resumed / "checkpoints" / "latest.pt").read_bytes() == latest  # nothing was touched

    result = _invoke("hessian", str(full / "checkpoints" / "final.pt"), "--samples", "60", "--batch-size", "30", "--top-k", "1",
                     "--trace-matvecs", "3", "--density-probes", "1", "--density-steps", "4", "--out", str(tmp_path / "h.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "h.json").read_text())["eigenvalues"]
    result = _invoke("info", str(full / "checkpoints" / "final.pt"), "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)["made"]["method"]
    assert made["algorithm"] == "myfile:FedProx" and made["method_args"] == {"mu": "0.5"}


@pytest.mark.parametrize("args, message", [
    (["--algorithm", "myfile:FedProx", "--method-arg", "nu=1"], "method 'fedprox' has no setting(s) nu (--method-arg); its settings: mu."),
    (["--algorithm", "myfile:FedProx", "--method-arg", "mu=lots"], "setting mu (--method-arg mu=...) must be a float, got 'lots'"),
    (["--algorithm", "myfile:Nope"], "has no attribute 'Nope'"),
    (["--algorithm", "myfile:FedProx", "--method-arg", "mu"], "--method-arg takes KEY=VALUE"),
    (["--algorithm", "myfile:FedProx", "--cohort", "vmap"], "--cohort vmap cannot train this run: method 'fedprox'"),
])
def test_a_bad_method_argument_or_import_path_is_one_paragraph_and_changes_nothing_on_disk(user_dir, tmp_path, args, message):
    result = _invoke("train", *TINY, *args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_the_flower_engine_refuses_a_method_of_its_own(user_dir, tmp_path):
    result = _invoke("train", *TINY, "--algorithm", "myfile:FedProx", "--engine", "flower", "--out", str(tmp_path / "f"))
    assert result.exit_code == 1 and "--engine flower trains fedavg, fedsam and fedasam" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "f").exists()


def test_the_readme_shows_the_example_file_verbatim():
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    section = readme.split("## Bring your own method", 1)[1].split("\n## ", 1)[0]
    assert "```python\n" + EXAMPLE.read_text() + "```" in section
