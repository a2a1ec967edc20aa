"""`landscape reproduce` and `landscape figures`: bad input gives one clean paragraph and writes nothing."""

from __future__ import annotations

import pytest
import torch

from click.testing import CliRunner

from fedlandscape_cli import main


def test_figures_without_finished_runs_is_a_clean_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["figures", str(tmp_path / "empty"), "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "No finished training run" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "f").exists()
    missing = CliRunner().invoke(main, ["figures", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_reproduce_rejects_nonsense_before_doing_anything(tmp_path):
    runner = CliRunner()
    seeds = runner.invoke(main, ["reproduce", "--preset", "smoke", "--seeds", "0", "--out", str(tmp_path / "r")])
    assert seeds.exit_code == 2 and "--seeds" in seeds.output
    preset = runner.invoke(main, ["reproduce", "--preset", "imagenet", "--out", str(tmp_path / "r")])
    assert preset.exit_code == 2 and "quick" in preset.output
    cifar = runner.invoke(main, ["reproduce", "--preset", "paper-cifar10", "--out", str(tmp_path / "r"), "--data-dir", str(tmp_path)])
    assert cifar.exit_code == 1 and "cifar-10-batches-py" in cifar.output and "Traceback" not in cifar.output
    device = runner.invoke(main, ["reproduce", "--preset", "smoke", "--out", str(tmp_path / "r"), "--device", "gpu0"])
    assert device.exit_code == 1 and "auto, cpu, cuda or cuda:N" in device.output and "Traceback" not in device.output
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is what a machine without a GPU says")
def test_reproduce_on_a_missing_gpu_writes_nothing(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--preset", "smoke", "--out", str(tmp_path / "r"), "--device", "cuda"])
    assert result.exit_code == 1 and "--device cpu" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_reproduce_offers_exactly_the_library_presets():
    from landscape.report.presets import REPRODUCE_PRESETS

    option = next(p for p in main.get_command(None, "reproduce").params if p.name == "preset")
    assert list(option.type.choices) == list(REPRODUCE_PRESETS)
