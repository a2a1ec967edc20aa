"""From checkpoints to surfaces: planes and lines through checkpoints, resume (on which device), the resume request, errors."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import landscape.surface.api as surface_run
from fedtrain.device import deterministic_algorithms
from fedtrain.errors import CheckpointError, ConfigError
from landscape.settings import SurfaceSettings
from landscape.surface.api import resume_request, slice_for, surface_for_checkpoint, surfaces_for_checkpoints
from landscape.surface.directions import plane_directions
from landscape.surface.grid import compute_surface
from landscape.surface.passes import fixed_or_cpu_defaults
from landscape.surface.record import Surface, load_surface, save_surface
from tests.landscape.surface.cases import mlp, params_of, write_checkpoint


def test_plane_through_checkpoints_puts_each_model_at_its_coordinates(tmp_path, synthetic):
    models = [mlp(s) for s in (0, 1, 2)]
    paths = [write_checkpoint(tmp_path / f"m{i}.pt", m) for i, m in enumerate(models)]
    surface = surface_for_checkpoint(paths[0], SurfaceSettings(steps=3, splits="test", num_examples=100), plane=paths[1:])
    coordinates = surface.metadata["directions"]["model_coordinates"]
    assert surface.metadata["kind"] == "plane" and len(coordinates) == 3
    assert surface.xcoordinates.min() < min(c[0] for c in coordinates) and surface.ycoordinates.max() > coordinates[2][1]
    plane = plane_directions(*(params_of(m) for m in models))
    x, y = synthetic["test"]
    for model, (a, b) in zip(models, coordinates):
        at_model = compute_surface(models[0], plane, [np.array([a]), np.array([b])], {"test": (x, y)})
        with torch.no_grad():
            own = nn.functional.cross_entropy(model(x), y).item()
        assert at_model.value("test", "loss")[0, 0] == pytest.approx(own, rel=1e-5)


def test_interpolation_through_checkpoints_hits_both_ends(tmp_path, synthetic):
    a, b = mlp(0), mlp(1)
    paths = [write_checkpoint(tmp_path / "a.pt", a), write_checkpoint(tmp_path / "b.pt", b)]
    surface = surface_for_checkpoint(paths[0], SurfaceSettings(steps=9, margin=0.25, splits="test", num_examples=100),
                                     interpolate=paths[1])
    x, y = synthetic["test"]
    for model, t in ((a, 0.0), (b, 1.0)):
        with torch.no_grad():
            own = nn.functional.cross_entropy(model(x), y).item()
        index = int(np.flatnonzero(surface.xcoordinates == t)[0])
        assert surface.value("test", "loss")[index] == pytest.approx(own, rel=1e-5)
    assert surface.ndim == 1 and surface.metadata["checkpoints"][1]["path"] == paths[1]


def interrupted_after(saves_allowed: int, monkeypatch) -> None:
    """Make the next surface computation stop (KeyboardInterrupt) after ``saves_allowed`` chunk saves."""
    saves = []

    def interrupted_save(surface, target):
        if len(saves) == saves_allowed:
            raise KeyboardInterrupt
        saves.append(surface.done.sum())
        return save_surface(surface, target)

    monkeypatch.setattr(surface_run, "save_surface", interrupted_save)


@pytest.mark.parametrize("resume_device", ["same", "same kind"])
def test_resume_on_each_device_gives_the_uninterrupted_result(tmp_path, monkeypatch, device, resume_device):
    # On a GPU with deterministic kernels; forward passes are deterministic there anyway, so equality is exact.
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    settings = SurfaceSettings(steps=5, splits=("train", "test"), num_examples=150, points_per_pass=4, device=str(device))
    with deterministic_algorithms(device.type == "cuda"):
        full = surface_for_checkpoint(path, settings, out=tmp_path / "full")
        interrupted_after(2, monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            surface_for_checkpoint(path, settings, out=tmp_path / "cut")
        monkeypatch.undo()
        if resume_device == "same kind":  # as if started on another GPU of this model, or another CPU
            partial = load_surface(tmp_path / "cut" / "surface.npz")
            started = {**partial.metadata["device_used"], "device": "cuda:7" if device.type == "cuda" else "cpu"}
            if device.type == "cpu":
                started["name"] = "another processor"
            save_surface(partial.with_metadata(device_used=started), tmp_path / "cut" / "surface.npz")
        resumed = surface_for_checkpoint(path, settings, out=tmp_path / "cut", resume=True)
    assert all(np.array_equal(full.values[k], resumed.values[k]) for k in full.values)
    runs = resumed.metadata["device_runs"]
    assert [run["points_before"] for run in runs] == [0, 8] and runs[1]["device_used"] == resumed.metadata["device_used"]
    assert resumed.metadata["device_used"]["device"].split(":")[0] == device.type


def test_a_partial_grid_is_not_resumed_on_another_kind_of_device(tmp_path, monkeypatch, device):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    settings = SurfaceSettings(steps=3, num_examples=50, points_per_pass=4, device=str(device))
    interrupted_after(1, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        surface_for_checkpoint(path, settings, out=tmp_path / "cut")
    monkeypatch.undo()
    target = tmp_path / "cut" / "surface.npz"
    partial = load_surface(target)
    other = {"device": "cpu", "name": "x86_64"} if device.type == "cuda" else {"device": "cuda:0", "name": "NVIDIA H100 80GB HBM3"}
    save_surface(partial.with_metadata(device_used=other), target)
    started = "cpu" if device.type == "cuda" else r"cuda \(NVIDIA H100 80GB HBM3\)"
    with pytest.raises(ConfigError, match=rf"Cannot resume .*surface.npz on {device.type}.*started on {started}.*--device {other['device']}"):
        surface_for_checkpoint(path, settings, out=tmp_path / "cut", resume=True)
    assert load_surface(target).done.sum() == 4  # untouched


def test_a_resume_reuses_the_pass_plan_of_its_file_and_files_from_before_devices_resume_on_the_cpu(tmp_path, monkeypatch):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    fixed = SurfaceSettings(steps=4, num_examples=60, batch_size=16, points_per_pass=3, device="cpu")
    full = surface_for_checkpoint(path, fixed, out=tmp_path / "full")
    interrupted_after(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        surface_for_checkpoint(path, fixed, out=tmp_path / "cut")
    monkeypatch.undo()
    target = tmp_path / "cut" / "surface.npz"
    partial = load_surface(target)
    old = {k: v for k, v in partial.metadata.items() if k not in ("device_used", "device_runs", "pass_plan")}
    save_surface(Surface(partial.xcoordinates, partial.ycoordinates, partial.values, partial.done, old), target)
    automatic = replace(fixed, batch_size=None, points_per_pass=None)  # a resume without the values: the file's
    resumed = surface_for_checkpoint(path, automatic, out=tmp_path / "cut", resume=True)
    assert all(np.array_equal(full.values[k], resumed.values[k]) for k in full.values)
    assert resumed.metadata["pass_plan"] == {"points_per_pass": 3, "batch_size": 16, "chosen_by": "partial file"}
    assert [run["points_before"] for run in resumed.metadata["device_runs"]] == [6]
    with pytest.raises(ConfigError, match="different settings.*points_per_pass"):
        surface_for_checkpoint(path, replace(automatic, points_per_pass=8), out=tmp_path / "full", resume=True)
    assert surface_for_checkpoint(path, automatic, out=tmp_path / "fresh").metadata["pass_plan"]["chosen_by"] == "cpu defaults"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_a_clear_error(tmp_path):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    with pytest.raises(ConfigError, match="--device cuda asks for a GPU"):
        surface_for_checkpoint(path, SurfaceSettings(steps=3, num_examples=20, device="cuda"), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_resume_of_a_partial_grid_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    settings = SurfaceSettings(steps=5, splits=("train", "test"), num_examples=150, points_per_pass=4)
    full = surface_for_checkpoint(path, settings, out=tmp_path / "full")
    saves = []

    def interrupted_save(surface, target):
        if len(saves) == 2:
            raise KeyboardInterrupt
        saves.append(surface.done.sum())
        return surface_run.save_surface.__wrapped__(surface, target)

    interrupted_save.__wrapped__ = surface_run.save_surface
    monkeypatch.setattr(surface_run, "save_surface", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        surface_for_checkpoint(path, settings, out=tmp_path / "cut")
    monkeypatch.undo()
    partial = load_surface(tmp_path / "cut" / "surface.npz")
    assert partial.done.sum() == 8 and not partial.complete and np.isnan(partial.value("train", "loss")).sum() == 17
    with pytest.raises(ConfigError, match="unfinished surface"):
        surface_for_checkpoint(path, settings, out=tmp_path / "cut")
    with pytest.raises(ConfigError, match="different settings.*seed"):
        surface_for_checkpoint(path, replace(settings, seed=1), out=tmp_path / "cut", resume=True)
    resumed = surface_for_checkpoint(path, settings, out=tmp_path / "cut", resume=True)
    assert resumed.complete and load_surface(tmp_path / "cut" / "surface.npz").complete
    assert all(np.array_equal(full.values[k], resumed.values[k]) for k in full.values)


def test_bad_input_gives_clear_errors(tmp_path):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    other = write_checkpoint(tmp_path / "b.pt", mlp(hidden=[4]), hidden=[4])
    with pytest.raises(ConfigError, match="range must be a positive number"):
        surface_for_checkpoint(path, SurfaceSettings(range=0.0))
    with pytest.raises(ConfigError, match="at least 2 steps"):
        surface_for_checkpoint(path, SurfaceSettings(steps=1))
    with pytest.raises(CheckpointError, match="different architectures"):
        surface_for_checkpoint(path, interpolate=other)
    with pytest.raises(ConfigError, match="Nothing to resume"):
        surface_for_checkpoint(path, out=tmp_path / "none", resume=True)
    with pytest.raises(ConfigError, match="splits must be"):
        surface_for_checkpoint(path, SurfaceSettings(splits="valid"))
    with pytest.raises(CheckpointError, match="does not exist"):
        surface_for_checkpoint(tmp_path / "missing.pt")


def test_hessian_directions_show_their_eigenvalue_as_curvature(tmp_path, device):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    h = 0.05
    settings = SurfaceSettings(directions="hessian", dims=1, range=h, steps=3, num_examples=200, batch_size=200, device=str(device))
    with deterministic_algorithms(device.type == "cuda"):  # the resume below recomputes the directions bit for bit
        surface = surface_for_checkpoint(path, settings, out=tmp_path / "h")
        resumed = surface_for_checkpoint(path, settings, out=tmp_path / "h", resume=True)
    eigenvalue = surface.metadata["directions"]["eigenvalues"][0]
    loss = surface.value("train", "loss")
    assert surface.metadata["kind"] == "hessian" and surface.metadata["directions"]["axis_norms"][0] == pytest.approx(1.0, abs=1e-5)
    assert (loss[0] - 2 * loss[1] + loss[2]) / h**2 == pytest.approx(eigenvalue, rel=0.05)
    assert np.array_equal(resumed.value("train", "loss"), loss)  # same directions recomputed


def test_resume_request_keeps_the_keys_and_values_of_existing_files():
    """Partial files written before the settings record store exactly these requests; they must stay resumable."""
    sha = ["a" * 64, "b" * 64, "c" * 64]
    cpu = fixed_or_cpu_defaults(None, None)  # what the settings' defaults give on the CPU
    random = resume_request(SurfaceSettings(), slice_for("a.pt", SurfaceSettings()), sha[:1], cpu)
    assert random == {
        "kind": "random", "checkpoints_sha256": sha[:1], "weights": "auto", "range": 1.0, "steps": 21, "dims": 2,
        "margin": None, "splits": ["train"], "num_examples": 2000, "seed": 0, "bn": "eval", "one_dim": "zero",
        "batch_size": 64, "points_per_pass": 8, "method": "loop",
    }
    assert list(random) == ["kind", "checkpoints_sha256", "weights", "range", "steps", "dims", "margin", "splits",
                            "num_examples", "seed", "bn", "one_dim", "batch_size", "points_per_pass", "method"]
    hessian = SurfaceSettings(directions="hessian", dims=1, margin=0.3, splits=("test", "train"), one_dim="keep")
    assert resume_request(hessian, slice_for("a.pt", hessian), sha[:1], cpu) == {
        **random, "kind": "hessian", "dims": 1, "margin": 0.3, "splits": ["test", "train"], "one_dim": None,
    }
    settings = SurfaceSettings(steps=11, range=2.0, dims=1, one_dim="keep", seed=3, bn="recalibrate", method="vmap")
    line = resume_request(settings, slice_for("a.pt", settings, interpolate="b.pt"), sha[:2], cpu)
    plane = resume_request(settings, slice_for("a.pt", settings, plane=["b.pt", "c.pt"]), sha, cpu)
    through = {**random, "range": None, "steps": 11, "dims": None, "seed": 3, "bn": "recalibrate", "one_dim": None,
               "method": "vmap"}
    assert line == {**through, "kind": "interpolation", "checkpoints_sha256": sha[:2], "margin": 0.5}
    assert plane == {**through, "kind": "plane", "checkpoints_sha256": sha, "margin": 0.2}
    explicit = replace(settings, margin=0.0)
    assert resume_request(explicit, slice_for("a.pt", explicit, plane=["b.pt", "c.pt"]), sha, cpu)["margin"] == 0.0


def test_slices_take_their_checkpoints_in_order_and_refuse_ambiguous_requests():
    settings = SurfaceSettings()
    assert slice_for("a.pt", settings, plane=["b.pt", "c.pt"]).paths == tuple(map(Path, ("a.pt", "b.pt", "c.pt")))
    with pytest.raises(ConfigError, match="Choose one of interpolate"):
        slice_for("a.pt", settings, interpolate="b.pt", plane=["b.pt", "c.pt"])
    with pytest.raises(ConfigError, match="two more checkpoints"):
        slice_for("a.pt", settings, plane=["b.pt"])


def test_several_checkpoints_share_one_settings_record(tmp_path):
    paths = [write_checkpoint(tmp_path / f"{name}.pt", mlp(seed)) for seed, name in enumerate("ab")]
    settings = SurfaceSettings(steps=3, dims=1, num_examples=50)
    results = surfaces_for_checkpoints(paths, settings, out=tmp_path / "out")
    assert {label: file for label, (file, _) in results.items()} == {
        "a": tmp_path / "out" / "a" / "surface.npz", "b": tmp_path / "out" / "b" / "surface.npz"}
    assert all(s.metadata["request"]["steps"] == 3 and s.shape == (3,) for _, s in results.values())
    with pytest.raises(ConfigError, match="exactly one first checkpoint"):
        surfaces_for_checkpoints(paths, settings, out=tmp_path / "out", interpolate=paths[0])
    with pytest.raises(ConfigError, match="at least one checkpoint"):
        surfaces_for_checkpoints([], settings, out=tmp_path / "out")
    keywords = inspect.signature(surfaces_for_checkpoints).parameters.values()
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in keywords)  # settings travel in the record


def test_checkpoints_on_one_line_are_named_in_the_error(tmp_path):
    a, b = mlp(0), mlp(1)
    midpoint = mlp(2)
    midpoint.load_state_dict({n: 0.5 * (t + b.state_dict()[n]) for n, t in a.state_dict().items()})
    paths = [write_checkpoint(tmp_path / f"{name}.pt", m) for name, m in (("a", a), ("b", b), ("mid", midpoint))]
    with pytest.raises(CheckpointError, match=r"plane through the checkpoints A = .*a\.pt, B = .*b\.pt, C = .*mid\.pt: .*lie on one line"):
        surface_for_checkpoint(paths[0], SurfaceSettings(steps=3, num_examples=20), plane=paths[1:])
