"""Faults on the writing side: --overwrite that keeps what is not ours, operating-system errors on write, paths built from names."""

from __future__ import annotations

import pytest
import torch

from fedtrain.checkpoint import load_checkpoint
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError, DataNotFoundError
from fedtrain.run import train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**changes) -> TrainConfig:
    base = dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, num_clients=4, samples_per_client=20,
                clients_per_round=2, rounds=2, batch_size=10, eval_every=1, seed=3)
    return TrainConfig(**{**base, **changes})


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --overwrite


def test_overwrite_refuses_a_folder_that_is_not_a_run_and_deletes_nothing(tmp_path):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "config.json").write_text('{"my": "experiment"}')
    (mine / "checkpoints" / "mine.pt").write_bytes(b"weights I trained elsewhere")
    before = snapshot(mine)
    with pytest.raises(ConfigError, match="replaces only a training run written by this toolkit.*nothing was deleted"):
        train(tiny(), mine, overwrite=True)
    assert snapshot(mine) == before


def test_overwrite_refuses_a_run_folder_holding_a_checkpoint_of_the_user(tmp_path):
    train(tiny(), tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "mine.pt").write_bytes(b"not ours")
    before = snapshot(tmp_path / "run")
    with pytest.raises(ConfigError, match="checkpoints/ holds files this toolkit did not write: mine.pt"):
        train(tiny(rounds=3), tmp_path / "run", overwrite=True)
    assert snapshot(tmp_path / "run") == before


def test_overwrite_keeps_the_previous_run_when_the_new_one_cannot_start(tmp_path):
    train(tiny(), tmp_path / "run")
    before = snapshot(tmp_path / "run")
    assert {"summary.json", "checkpoints/final.pt"} <= set(before)
    with pytest.raises(DataNotFoundError):
        train(tiny(dataset="cifar10", data_dir=str(tmp_path / "no-data")), tmp_path / "run", overwrite=True)
    assert snapshot(tmp_path / "run") == before  # final.pt and summary.json are still the old run's


def test_overwrite_replaces_a_run_of_ours_and_only_its_files(tmp_path):
    train(tiny(), tmp_path / "run")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    train(tiny(rounds=3), tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt").round == 3
    assert not (tmp_path / "run" / "checkpoints" / "round_00001.pt").exists()  # the old run's kept rounds are gone
