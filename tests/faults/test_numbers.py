"""Faults on the numbers side: every bad number on the command line or in a config file is one paragraph, exit != 0, no file.

Each case goes through the real CLI (click's runner in this process, the console script where a case used to
hang) on a tiny model and the synthetic data. What every case must show: a non-zero exit, no traceback, one
``Error:`` line naming the setting, the output folder exactly as before, and (where it used to hang) an
answer within a timeout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.models import build_model
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture: one torch thread)

SEED_RANGE = r"seed \(--seed\) must be an integer from 0 to 2\*\*63 - 1"
TRAIN = ["train", "--dataset", "synthetic", "--model", "mlp", "--num-clients", "4", "--clients-per-round", "2", "--rounds", "2",
         "--samples-per-client", "20", "--eval-examples", "20", "--threads", "1"]
HESSIAN = ["--samples", "50", "--batch-size", "50", "--no-trace", "--no-density", "--device", "cpu"]
SURFACE = ["--samples", "40", "--steps", "3", "--device", "cpu"]


def _checkpoint(path: Path, hidden: list[int]) -> Path:
    kwargs = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": hidden}
    model = build_model("mlp", seed=0, **kwargs)
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=kwargs, weights=model.state_dict(), dataset="synthetic"), path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A 277-parameter model (16x16 inputs, one hidden unit, 10 classes), a 1,078-parameter one, a line's end and a saved surface."""
    from landscape.settings import SurfaceSettings
    from landscape.surface.api import surface_for_checkpoint

    folder = tmp_path_factory.mktemp("numbers")
    paths = {"p277": _checkpoint(folder / "p277.pt", [1]), "mlp": _checkpoint(folder / "mlp.pt", [4])}
    paths["end"] = _checkpoint(folder / "end.pt", [4])
    surface_for_checkpoint(paths["mlp"], SurfaceSettings(steps=3, num_examples=40, device="cpu"), out=folder / "saved")
    paths["surface"] = folder / "saved" / "surface.npz"
    return paths


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(args: list[str], match: str, folder: Path) -> str:
    """Run the CLI; assert exit != 0, no traceback, one ``Error:`` line matching ``match``, ``folder`` unchanged."""
    before = snapshot(folder)
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, SystemExit), f"{result.exception!r} escaped: {result.output}"
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and re.search(match, errors[0]), result.output
    assert snapshot(folder) == before
    return errors[0]


# --- numbers on the command line --------------------------------------------------------------------------
HESSIAN_CASES = [
    (["--tol", "nan"], r"tol must be a positive number \(finite, --tol\), got nan"),
    (["--tol", "inf"], r"tol must be a positive number \(finite, --tol\), got inf"),
    (["--tol", "1"], r"tol \(--tol\) must be below 1"),
    (["--max-matvecs", "1", "--top-k", "5"], r"max_matvecs \(--max-matvecs\) is 1 but top_k \(--top-k\) is 5"),
    (["--seed", "-1"], SEED_RANGE + r".*got -1"),
    (["--seed", str(2**70)], SEED_RANGE + r".*got 1180591620717411303424"),
    (["--seed", str(2**63)], SEED_RANGE),
    (["--top-k", "278"], r"top_k \(--top-k\) is 278 but the model has 277 parameters"),
]


@pytest.mark.parametrize(("flags", "match"), HESSIAN_CASES, ids=[" ".join(f) for f, _ in HESSIAN_CASES])
def test_hessian_refuses_bad_numbers(inputs, tmp_path, flags, match):
    refused(["hessian", str(inputs["p277"]), *HESSIAN, *flags, "--out", str(tmp_path / "h.json")], match, tmp_path)


def test_hessian_top_k_beyond_the_parameters_answers_at_once_through_the_console_script(inputs, tmp_path):
    # It used to hang (Lanczos looking for 300 eigenvalues of a 277 x 277 matrix), later to silently return 277.
    script = Path(sys.executable).with_name("landscape")
    start = time.perf_counter()
    completed = subprocess.run([str(script), "hessian", str(inputs["p277"]), *HESSIAN, "--top-k", "300", "--out", str(tmp_path / "h.json")],
                               capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert "top_k (--top-k) is 300 but the model has 277 parameters, hence 277 Hessian eigenvalues" in completed.stderr
    assert not (tmp_path / "h.json").exists() and time.perf_counter() - start < 120


SURFACE_CASES = [
    (["--margin", "inf", "--interpolate", "END"], r"margin must be a number >= 0 \(finite, --margin\), got inf"),
    (["--margin", "nan", "--interpolate", "END"], r"margin must be a number >= 0 \(finite, --margin\), got nan"),
    (["--range", "inf"], r"range must be a positive number \(finite, --range\), got inf"),
    (["--range", "nan"], r"range must be a positive number \(finite, --range\), got nan"),
    (["--seed", "-1"], SEED_RANGE),
    (["--seed", str(2**70)], SEED_RANGE),
    (["--steps", "5000"], r"A grid of 5000 x 5000 has 25,000,000 points .* at most 16,777,216 \(4096 x 4096\)"),
    (["--steps", "100000"], r"A grid of 100000 x 100000 has 10,000,000,000 points \(74.5 GiB per stored quantity"),
    (["--steps", "5000", "--dims", "1", "--plane", "END", "END"], r"A grid of 5000 x 5000"),
]


@pytest.mark.parametrize(("flags", "match"), SURFACE_CASES, ids=[" ".join(f) for f, _ in SURFACE_CASES])
def test_plot_surface_refuses_bad_numbers(inputs, tmp_path, flags, match):
    flags = [str(inputs["end"]) if f == "END" else f for f in flags]
    refused(["plot-surface", str(inputs["mlp"]), *SURFACE, *flags, "--out", str(tmp_path / "out")], match, tmp_path)


VMAX_CASES = [
    (["--vmax", "nan"], r"vmax \(--vmax\) must be a finite number, got nan"),
    (["--vmax", "inf"], r"vmax \(--vmax\) must be a finite number, got inf"),
    (["--vmax", "-inf"], r"vmax \(--vmax\) must be a finite number, got -inf"),
    (["--vmax", "-5"], r"vmax \(--vmax\) -5 is at or below the lowest train loss of the surfaces \(2\.\d+; they span"),
    (["--vmax", "0.3", "--log-scale"], r"vmax \(--vmax\) 0.3 is at or below the lowest log10 train loss"),
]


@pytest.mark.parametrize(("flags", "match"), VMAX_CASES, ids=[" ".join(f) for f, _ in VMAX_CASES])
def test_replotting_refuses_a_vmax_that_cannot_scale_the_colours_before_any_figure(inputs, tmp_path, flags, match):
    refused(["plot-surface", "--from", str(inputs["surface"]), *flags, "--out", str(tmp_path / "figs")], match, tmp_path)


def test_a_vmax_inside_the_losses_clips_them(inputs, tmp_path):
    result = CliRunner().invoke(main, ["plot-surface", "--from", str(inputs["surface"]), "--vmax", "2.4", "--plot", "heatmap",
                                       "--out", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "figs" / "train_loss_heatmap.png").read_bytes()[:4] == b"\x89PNG"


TRAIN_CASES = [
    (["--seed", "-1"], SEED_RANGE + r".*got -1"),
    (["--seed", str(2**70)], SEED_RANGE + r".*got 1180591620717411303424"),  # it used to write config.json first
    (["--lr", "nan"], r"lr \(--lr\) must be a finite number > 0, got nan"),
    (["--lr", "inf"], r"lr \(--lr\) must be a finite number > 0, got inf"),
    (["--alpha", "nan"], r"alpha \(--alpha\) must be a finite number >= 0 or null, got nan"),
    (["--rho", "inf", "--algorithm", "fedsam"], r"rho \(--rho\) must be a finite number >= 0"),
    (["--swa-start", "inf"], r"swa_start \(--swa-start\) must be a fraction in \[0, 1\) or a whole round number, got inf"),
    (["--swa-lr", "nan"], r"swa_lr \(--swa-lr\) must be a finite number >= 0, got nan"),
    (["--checkpoint-round", "5"], r"checkpoint_rounds \(--checkpoint-round\) \[5\] include rounds after the last \(2\)"),
    (["--threads", str(10**11)], r"Invalid value for '--threads': 100000000000 is not in the range 1<=x<=1024"),  # was an overflow traceback
]


@pytest.mark.parametrize(("flags", "match"), TRAIN_CASES, ids=[" ".join(f) for f, _ in TRAIN_CASES])
def test_train_refuses_bad_numbers_before_writing_anything(tmp_path, flags, match):
    refused([*TRAIN, *flags, "--out", str(tmp_path / "run")], match, tmp_path)


def test_partition_refuses_a_negative_seed(tmp_path):
    refused(["partition", "--dataset", "synthetic", "--alpha", "0.5", "--num-clients", "10", "--seed", "-1",
             "--out", str(tmp_path / "p.json")], SEED_RANGE, tmp_path)


def test_reproduce_refuses_more_seeds_than_it_can_plan_at_once(tmp_path):
    # 10**7 seeds used to be enumerated (12 training configs each) before anything else: minutes of memory growth
    start = time.perf_counter()
    refused(["reproduce", "--preset", "smoke", "--seeds", str(10**7), "--device", "cpu", "--out", str(tmp_path / "r")],
            r"--seeds must be an integer from 1 to 1000", tmp_path)
    assert time.perf_counter() - start < 30


# --- config files: wrong types and values -----------------------------------------------------------------
CONFIG_CASES = [
    ("c.toml", 'checkpoint_rounds = "abc"\n', r"checkpoint_rounds"),
    ("c.toml", "data_dir = 5\n", r"data_dir"),
    ("c.toml", 'alpha = "abc"\n', r"alpha"),
    ("c.toml", "rounds = true\n", r"rounds"),
    ("c.toml", "seed = -3\n", SEED_RANGE + r".*got -3"),
    ("c.toml", f"seed = {2**63}\n", r"seed"),  # beyond TOML's own 64-bit integers: the parser or the record refuses
    ("c.toml", "lr = nan\n", r"lr \(--lr\) must be a finite number > 0, got nan"),
    ("c.toml", "momentum = inf\n", r"momentum \(--momentum\) must be a finite number in \[0, 1\), got inf"),
    ("c.toml", "checkpoint_rounds = [500]\n", r"checkpoint_rounds \(--checkpoint-round\) \[500\] include rounds after the last"),
    ("c.yaml", "lr: .nan\n", r"lr \(--lr\) must be a finite number > 0, got nan"),
    ("c.yaml", "alpha: .inf\n", r"alpha \(--alpha\) must be a finite number >= 0 or null, got inf"),
    ("c.yaml", "seed: -1\n", SEED_RANGE),
    ("c.yaml", "swa_start: .inf\n", r"swa_start \(--swa-start\) must be a fraction"),
    ("c.yaml", "partition: dirichlet\nalpha: null\n", r"partition 'dirichlet' needs alpha \(--alpha\)"),
    ("c.yaml", "last_k: 0\n", r"last_k \(--last-k\) must be an integer >= 1, got 0"),
    ("c.toml", 'model_kwargs = {hidden = "abc"}\n', r"Model 'mlp' cannot be built from model_kwargs"),
    ("c.toml", "model_kwargs = {hidden = [100000000]}\n", r"has 26,700,000,010 values, more than the 100,000,000"),  # 107 GB
    ("c.toml", "model_kwargs = {num_classes = 3}\n", r"3 classes, but the data have \[1, 16, 16\] and 10"),  # failed rounds later
]


@pytest.mark.parametrize(("name", "content", "match"), CONFIG_CASES, ids=[c.strip() for _, c, _ in CONFIG_CASES])
def test_train_refuses_a_config_file_with_a_bad_value(tmp_path, name, content, match):
    config = tmp_path / name
    config.write_text(content)
    refused([*TRAIN, "--config", str(config), "--out", str(tmp_path / "run")], match, tmp_path)


# --- text that reaches a figure ---------------------------------------------------------------------------
def test_a_checkpoint_name_with_a_non_utf8_byte_or_dollars_still_gets_its_figure(inputs, tmp_path):
    odd = tmp_path / b"run\xff$\\frac$.pt".decode("utf-8", "surrogateescape")  # the name as os.listdir would give it
    odd.write_bytes(inputs["p277"].read_bytes())
    plot = tmp_path / "esd.png"
    result = CliRunner().invoke(main, ["hessian", str(odd), "--samples", "50", "--batch-size", "50", "--no-trace",
                                       "--density-probes", "1", "--density-steps", "5", "--device", "cpu", "--plot", str(plot)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert plot.read_bytes()[:4] == b"\x89PNG"
