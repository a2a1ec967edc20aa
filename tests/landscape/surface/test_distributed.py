"""landscape.surface.distributed: a grid split over two gloo ranks is the one-process grid bit for bit, written once."""

from __future__ import annotations

import numpy as np
import pytest

from fedtrain.errors import ConfigError
from landscape.settings import SurfaceSettings
from landscape.surface.distributed import surface_for_checkpoint_parallel
from landscape.surface.grid import compute_surface
from landscape.surface.record import load_surface
from landscape.surface.directions import interpolation_directions
from tests.landscape.surface.cases import mlp, params_of, write_checkpoint

# 5 x 5 = 25 points in 7 chunks of 4: rank 0 evaluates chunks 0, 2, 4, 6 and rank 1 chunks 1, 3, 5
SETTINGS = SurfaceSettings(steps=5, splits="test", num_examples=100, points_per_pass=4, batch_size=50, device="cpu")


def test_two_ranks_give_the_one_process_surface_bit_for_bit(tmp_path):
    path = write_checkpoint(tmp_path / "m.pt", mlp(0))
    one = surface_for_checkpoint_parallel(path, SETTINGS, nproc=1, out=tmp_path / "one")
    two = surface_for_checkpoint_parallel(path, SETTINGS, nproc=2, out=tmp_path / "two")
    saved = load_surface(tmp_path / "two" / "surface.npz")
    for surface in (two, saved):
        assert surface.done.all() and surface.metadata["complete"]
        assert np.array_equal(surface.xcoordinates, one.xcoordinates) and np.array_equal(surface.ycoordinates, one.ycoordinates)
        assert set(surface.values) == set(one.values)
        for key, value in one.values.items():
            assert np.array_equal(surface.values[key], value), key
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if not p.name.startswith(".")) == ["surface.npz"]


class _Recorded:
    """A one-process stand-in for the collective: records the points each merge call got from this rank."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world, self.merged = rank, world, []

    def merge(self, values, done, before):
        self.merged.append(np.flatnonzero((done & ~before).reshape(-1)).tolist())


def test_a_rank_evaluates_every_world_th_chunk_and_merges_after_each_group(synthetic):
    directions = interpolation_directions(params_of(mlp(0)), params_of(mlp(1)))
    coordinates = [np.linspace(-0.5, 1.5, 9)]  # 9 points in 5 chunks of 2: rank 1 of 2 has chunks 1 and 3
    share = _Recorded(rank=1, world=2)
    alone = compute_surface(mlp(0), directions, coordinates, {"test": synthetic["test"]}, points_per_pass=2)
    part = compute_surface(mlp(0), directions, coordinates, {"test": synthetic["test"]}, points_per_pass=2, share=share)
    assert share.merged == [[2, 3], [6, 7], []]  # three groups of chunks: (0, 1), (2, 3), (4)
    mine = np.zeros(9, dtype=bool)
    mine[[2, 3, 6, 7]] = True
    loss = part.value("test", "loss")
    assert np.array_equal(loss[mine], alone.value("test", "loss")[mine]) and np.isnan(loss[~mine]).all()


def test_parallel_requests_that_cannot_be_split_are_refused(tmp_path):
    path = write_checkpoint(tmp_path / "m.pt", mlp(0))
    with pytest.raises(ConfigError, match="--nproc must be at least 1"):
        surface_for_checkpoint_parallel(path, SETTINGS, nproc=0)
    with pytest.raises(ConfigError, match="--resume finishes a partial surface with --nproc 1"):
        surface_for_checkpoint_parallel(path, SETTINGS, nproc=2, out=tmp_path / "s", resume=True)
    with pytest.raises(ConfigError, match="Live progress needs --nproc 1"):
        surface_for_checkpoint_parallel(path, SETTINGS, nproc=2, progress=lambda event: None)
