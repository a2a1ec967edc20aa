"""`landscape plot-surface`: files and JSON written, re-plotting with --from, resume, clean errors, the real script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fedlandscape_cli import main
from fedlandscape_cli.surface import plot_surface
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.models import build_model
from landscape import settings as analysis_settings
from landscape.settings import SurfaceSettings
from landscape.surface.record import Surface, load_surface, save_surface

KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [8]}
FAST = ["--steps", "3", "--samples", "60"]


def checkpoint(path: Path, seed: int = 0, **kwargs) -> str:
    model = build_model("mlp", **{**KWARGS, **kwargs}, seed=seed)
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs={**KWARGS, **kwargs}, weights=model.state_dict(), dataset="synthetic"), path)
    return str(path)


def invoke(*args: str):
    return CliRunner().invoke(main, ["plot-surface", *args], catch_exceptions=False)


def test_two_checkpoints_give_surfaces_and_shared_scale_figures(tmp_path):
    a, b = checkpoint(tmp_path / "a.pt", 0), checkpoint(tmp_path / "b.pt", 1)
    result = invoke(a, b, *FAST, "--split", "train", "--split", "test", "--plot", "contour", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [s["label"] for s in report["surfaces"]] == ["a", "b"]
    assert report["surfaces"][0]["bn"].startswith("eval") and report["surfaces"][0]["num_examples"] == {"train": 60, "test": 60}
    for label in ("a", "b"):
        surface = load_surface(tmp_path / "out" / label / "surface.npz")
        assert surface.complete and surface.splits == ("train", "test") and surface.shape == (3, 3)
    for name in ("train_loss_contour.png", "test_loss_contour.pdf", "train_loss_stderr_heatmap.png"):
        assert (tmp_path / "out" / name).is_file()
    assert not (tmp_path / "out" / "train_loss_3d.png").exists()


def test_replot_from_saved_surface_needs_no_checkpoint(tmp_path):
    a = checkpoint(tmp_path / "a.pt")
    assert invoke(a, *FAST, "--plot", "heatmap", "--out", str(tmp_path / "first")).exit_code == 0
    (tmp_path / "a.pt").unlink()
    result = invoke("--from", str(tmp_path / "first" / "surface.npz"), "--plot", "3d", "--log-scale", "--out", str(tmp_path / "again"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "train_loss_3d.png").is_file() and not (tmp_path / "again" / "surface.npz").exists()


def test_interpolation_and_plane(tmp_path):
    a, b, c = (checkpoint(tmp_path / f"{n}.pt", s) for s, n in enumerate("abc"))
    line = invoke(a, "--interpolate", b, "--steps", "5", "--samples", "60", "--out", str(tmp_path / "line"))
    assert line.exit_code == 0, line.output
    assert json.loads(line.stdout)["surfaces"][0]["kind"] == "interpolation"
    assert (tmp_path / "line" / "train_loss_curve.png").is_file()
    plane = invoke(a, "--plane", b, c, *FAST, "--plot", "contour", "--out", str(tmp_path / "plane"))
    assert plane.exit_code == 0, plane.output
    coordinates = json.loads(plane.stdout)["surfaces"][0]["model_coordinates"]
    assert len(coordinates) == 3 and coordinates[0] == [0.0, 0.0]


def test_resume_finishes_with_the_same_numbers(tmp_path):
    a = checkpoint(tmp_path / "a.pt")
    args = [a, *FAST, "--points-per-pass", "2", "--plot", "heatmap"]
    assert invoke(*args, "--out", str(tmp_path / "full")).exit_code == 0
    full = load_surface(tmp_path / "full" / "surface.npz")
    cut = full.values.copy()
    done = full.done.copy()
    done.reshape(-1)[4:] = False
    cut = {k: np.where(done, v, np.nan) for k, v in full.values.items()}
    save_surface(Surface(full.xcoordinates, full.ycoordinates, cut, done, {**full.metadata, "complete": False}), tmp_path / "part" / "surface.npz")
    refused = invoke(*args, "--out", str(tmp_path / "part"))
    assert refused.exit_code == 1 and "--resume" in refused.output
    resumed = invoke(*args, "--out", str(tmp_path / "part"), "--resume")
    assert resumed.exit_code == 0, resumed.output
    finished = load_surface(tmp_path / "part" / "surface.npz")
    assert all(np.array_equal(finished.values[k], full.values[k]) for k in full.values)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--range", "0"], "not in the range x>0"),
        (["--steps", "1"], "not in the range x>=2"),
        (["--interpolate", "OTHER"], "different architectures"),
        (["--resume"], "Nothing to resume"),
    ],
)
def test_bad_input_gives_one_paragraph_and_exit_code(tmp_path, args, message):
    a = checkpoint(tmp_path / "a.pt")
    other = checkpoint(tmp_path / "other.pt", hidden=[4])
    args = [other if arg == "OTHER" else arg for arg in args]
    result = CliRunner().invoke(main, ["plot-surface", a, *FAST, *args, "--out", str(tmp_path / "out")])
    assert result.exit_code in (1, 2) and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out" / "surface.npz").exists()


def test_choices_and_defaults_are_those_of_the_settings_record():
    options = {p.name: p for p in plot_surface.params if isinstance(p, click.Option)}
    choices = {"directions": "DIRECTION_KINDS", "splits": "SPLITS", "bn": "BN_MODES", "weights": "WEIGHTS",
               "one_dim": "ONE_DIM_POLICIES", "method": "EVALUATION_METHODS", "kinds": "SURFACE_PLOT_KINDS"}
    for name, constant in choices.items():
        assert tuple(options[name].type.choices) == getattr(analysis_settings, constant), name
    fields = {"range_": "range", "samples": "num_examples"}
    defaults = SurfaceSettings()
    for name in ("directions", "range_", "steps", "dims", "margin", "splits", "samples", "bn", "weights", "one_dim",
                 "batch_size", "points_per_pass", "method", "device", "seed"):
        assert options[name].default == getattr(defaults, fields.get(name, name)), name


def test_device_is_used_and_reported(tmp_path, device):
    a = checkpoint(tmp_path / "a.pt")
    result = invoke(a, *FAST, "--dims", "1", "--device", str(device), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["surfaces"][0]
    assert row["device_used"]["device"].split(":")[0] == device.type and f"computed on {device.type}" in result.stderr
    assert load_surface(tmp_path / "out" / "surface.npz").metadata["device_used"] == row["device_used"]


@pytest.mark.parametrize(("device", "message"), [("gpu", "--device) must be"), ("cuda:x", "--device) must be")]
                         + ([] if torch.cuda.is_available() else [("cuda", "asks for a GPU")]))
def test_a_device_this_machine_lacks_or_a_malformed_one_is_a_clean_error(tmp_path, device, message):
    a = checkpoint(tmp_path / "a.pt")
    result = CliRunner().invoke(main, ["plot-surface", a, *FAST, "--device", device, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_the_installed_script_runs(tmp_path):
    a = checkpoint(tmp_path / "a.pt")
    script = Path(sys.executable).with_name("landscape")
    done = subprocess.run([str(script), "plot-surface", a, *FAST, "--dims", "1", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["surfaces"][0]["shape"] == [3]
    assert "BatchNorm: eval" in done.stderr
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    failed = subprocess.run([str(script), "plot-surface", str(broken)], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr and "could not be read" in failed.stderr
