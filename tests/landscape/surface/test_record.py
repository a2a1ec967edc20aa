"""surface.npz: Li et al.'s key names, exact round trip of values, partial grids and metadata; foreign files refused."""

from __future__ import annotations

import numpy as np
import pytest

from fedtrain.errors import ConfigError
from landscape.surface.record import Surface, load_surface, save_surface


def make_surface(ndim: int = 2, done_all: bool = True) -> Surface:
    x = np.linspace(-1, 1, 3)
    y = np.linspace(-0.5, 0.5, 4) if ndim == 2 else None
    shape = (3, 4) if ndim == 2 else (3,)
    rng = np.random.default_rng(0)
    values = {k: rng.random(shape) for k in ("train_loss", "train_loss_stderr", "train_acc", "train_acc_stderr")}
    done = np.ones(shape, dtype=bool)
    if not done_all:
        done.reshape(-1)[5:] = False
        for v in values.values():
            v.reshape(-1)[5:] = np.nan
    return Surface(x, y, values, done, {"kind": "random", "seeds": {"directions": 3}, "bn": "eval"})


@pytest.mark.parametrize("ndim", [1, 2])
def test_round_trip_is_exact_and_uses_li_et_al_key_names(tmp_path, ndim):
    surface = make_surface(ndim)
    path = save_surface(surface, tmp_path / "surface.npz")
    with np.load(path, allow_pickle=False) as raw:
        assert {"xcoordinates", "train_loss", "train_acc", "train_loss_stderr", "metadata"} <= set(raw.files)
        assert ("ycoordinates" in raw.files) == (ndim == 2)
    loaded = load_surface(path)
    assert loaded.ndim == ndim and loaded.shape == surface.shape and loaded.splits == ("train",)
    assert np.array_equal(loaded.xcoordinates, surface.xcoordinates)
    assert all(np.array_equal(loaded.values[k], surface.values[k]) for k in surface.values)
    assert loaded.metadata == surface.metadata
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_partial_grid_keeps_nan_and_done_mask(tmp_path):
    loaded = load_surface(save_surface(make_surface(done_all=False), tmp_path / "s.npz"))
    assert not loaded.complete and loaded.done.sum() == 5
    assert np.isnan(loaded.value("train", "loss")).sum() == 7


def test_missing_key_and_foreign_files_are_refused(tmp_path):
    surface = make_surface()
    with pytest.raises(ConfigError, match="no 'test_loss'"):
        surface.value("test", "loss")
    with pytest.raises(ConfigError, match="No surface file"):
        load_surface(tmp_path / "missing.npz")
    np.savez(tmp_path / "foreign.npz", train_loss=np.zeros(3))
    with pytest.raises(ConfigError, match="not a fedlandscape surface file"):
        load_surface(tmp_path / "foreign.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(save_surface(surface, tmp_path / "ok.npz").read_bytes()[:100])
    with pytest.raises(ConfigError, match="could not be read"):
        load_surface(truncated)
