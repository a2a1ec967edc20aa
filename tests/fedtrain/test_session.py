"""What a resume computes with: the recorded threads, device kind and deterministic flag, unless given (then a warning)."""

from __future__ import annotations

import pytest
import torch

from fedtrain.checkpoint import load_checkpoint
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.run import train
from fedtrain.session import SessionNumerics, recorded_numerics, resume_numerics

SAVED = TrainConfig(dataset="synthetic", model="mlp", device="auto", deterministic=False)


@pytest.fixture(autouse=True)
def _threads_restored():
    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before  # train(threads=...) sets torch's count for the run only
    torch.set_num_threads(before)


def test_a_run_records_what_it_computed_with(tmp_path):
    config = TrainConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, num_clients=4, samples_per_client=20,
                         clients_per_round=2, rounds=2, batch_size=10, eval_every=1, device="cpu", deterministic=True)
    train(config, tmp_path / "run", threads=1)
    assert recorded_numerics(tmp_path / "run" / "checkpoints" / "latest.pt") == SessionNumerics(1, "cpu", True)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt").versions["torch_threads"] == "1"
    assert recorded_numerics(tmp_path / "run" / "checkpoints" / "nothing.pt") == SessionNumerics()


def test_what_is_not_given_is_the_recorded_setting_without_a_warning():
    config, threads, warnings = resume_numerics(SAVED, SessionNumerics(threads=1, device="cpu", deterministic=True))
    assert threads == 1 and config.deterministic is True and warnings == []
    assert config.device == ("auto" if not torch.cuda.is_available() else "cpu")  # auto stays auto where it means the CPU
    assert config.to_dict() | {"device": None, "deterministic": None} == SAVED.to_dict() | {"device": None, "deterministic": None}


def test_a_given_setting_that_differs_is_used_with_a_warning():
    recorded = SessionNumerics(threads=1, device="cpu", deterministic=False)
    _, threads, warnings = resume_numerics(SAVED, recorded, threads=2)
    assert threads == 2 and len(warnings) == 1
    assert "--threads 2, but the run computed with 1 CPU threads" in warnings[0] and "bit-identity is no longer promised" in warnings[0]
    assert resume_numerics(SAVED, recorded, threads=1)[2] == []  # the same count is no change
    config, _, warnings = resume_numerics(SAVED, recorded, deterministic=True)
    assert config.deterministic is True and warnings == []  # deterministic kernels change nothing on a CPU


def test_nothing_recorded_leaves_the_saved_config_and_torchs_threads():
    config, threads, warnings = resume_numerics(SAVED, SessionNumerics())
    assert (config, threads, warnings) == (SAVED, None, [])


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without a GPU says about a run that used one")
def test_a_gpu_run_is_not_moved_to_the_cpu_silently():
    recorded = SessionNumerics(threads=1, device="cuda", deterministic=True)
    with pytest.raises(ConfigError, match="computed on a GPU .* pass --device cpu"):
        resume_numerics(SAVED, recorded)
    config, _, warnings = resume_numerics(SAVED, recorded, device="cpu", deterministic=False)
    assert config.device == "cpu" and len(warnings) == 2
    assert "--device cpu, but the run computed on cuda" in warnings[0] and "--no-deterministic" in warnings[1]
