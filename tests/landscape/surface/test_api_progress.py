"""Progress of a loss surface: grid points done / planned after every pass, from a resumed file's count, same numbers."""

from __future__ import annotations

import numpy as np
import pytest

import landscape.surface.api as surface_run
from fedtrain.progress import Progress
from landscape.settings import SurfaceSettings
from landscape.surface.api import surface_for_checkpoint, surfaces_for_checkpoints
from landscape.surface.record import load_surface, save_surface
from tests.landscape.surface.cases import mlp, write_checkpoint

SETTINGS = SurfaceSettings(steps=5, splits="test", num_examples=60, points_per_pass=4)


def test_points_are_reported_after_every_pass_up_to_the_grid_and_change_nothing(tmp_path):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    events: list[Progress] = []
    watched = surface_for_checkpoint(path, SETTINGS, out=tmp_path / "w", progress=events.append)
    alone = surface_for_checkpoint(path, SETTINGS, out=tmp_path / "a")
    assert np.array_equal(watched.value("test", "loss"), alone.value("test", "loss"))
    assert [(e.done, e.total) for e in events] == [(0, 25), (4, 25), (8, 25), (12, 25), (16, 25), (20, 25), (24, 25), (25, 25)]
    assert [e.detail for e in events][:2] == ["pass 0/7", "pass 1/7"] and events[-1].detail == "pass 7/7"
    assert all(e.stage == "surface" and e.unit == "grid points" for e in events) and "--steps" in events[0].hint


def test_a_resumed_surface_starts_from_the_points_its_file_has(tmp_path, monkeypatch):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    saves: list[int] = []

    def interrupted_save(surface, target):
        if len(saves) == 3:
            raise KeyboardInterrupt
        saves.append(int(surface.done.sum()))
        return save_surface(surface, target)

    monkeypatch.setattr(surface_run, "save_surface", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        surface_for_checkpoint(path, SETTINGS, out=tmp_path / "cut")
    monkeypatch.undo()
    events: list[Progress] = []
    resumed = surface_for_checkpoint(path, SETTINGS, out=tmp_path / "cut", resume=True, progress=events.append)
    assert saves == [4, 8, 12] and resumed.complete and [e.done for e in events] == [12, 16, 20, 24, 25]
    assert load_surface(tmp_path / "cut" / "surface.npz").complete


def test_several_checkpoints_each_report_a_labelled_stage(tmp_path):
    paths = [write_checkpoint(tmp_path / f"{name}.pt", mlp(seed)) for seed, name in enumerate(("fedavg", "fedasam"))]
    events: list[Progress] = []
    surfaces_for_checkpoints(paths, SurfaceSettings(steps=3, splits="test", num_examples=30, points_per_pass=5),
                             out=tmp_path / "out", progress=events.append)
    assert [(e.detail, e.done) for e in events] == [("fedavg pass 0/2", 0), ("fedavg pass 1/2", 5), ("fedavg pass 2/2", 9),
                                                    ("fedasam pass 0/2", 0), ("fedasam pass 1/2", 5), ("fedasam pass 2/2", 9)]
    assert surface_run.save_surface is save_surface
