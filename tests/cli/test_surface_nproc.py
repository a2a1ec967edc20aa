"""`landscape plot-surface --nproc 2`: the grid shared by two gloo processes is --nproc 1's grid bit for bit, figures included."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from fedlandscape_cli import main
from landscape.surface.record import load_surface
from tests.landscape.surface.cases import mlp, write_checkpoint

TINY = ["--steps", "5", "--samples", "100", "--split", "test", "--points-per-pass", "4", "--batch-size", "50", "--device", "cpu",
        "--plot", "contour"]


def test_nproc_2_writes_the_nproc_1_surface(tmp_path):
    path = write_checkpoint(tmp_path / "m.pt", mlp(0))
    for n in (1, 2):
        result = CliRunner().invoke(main, ["plot-surface", path, *TINY, "--nproc", str(n), "--out", str(tmp_path / f"s{n}")])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["figures"]
    one, two = (load_surface(tmp_path / f"s{n}" / "surface.npz") for n in (1, 2))
    assert two.done.all() and set(two.values) == set(one.values)
    assert all(np.array_equal(two.values[k], one.values[k]) for k in one.values)


def test_nproc_with_resume_is_one_paragraph(tmp_path):
    path = write_checkpoint(tmp_path / "m.pt", mlp(0))
    result = CliRunner().invoke(main, ["plot-surface", path, *TINY, "--nproc", "2", "--resume", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and "--resume finishes a partial surface with --nproc 1" in result.output
    assert "Traceback" not in result.output
