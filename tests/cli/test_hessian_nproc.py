"""`landscape hessian --nproc 2`: the products shared by two gloo processes give --nproc 1's report (eigenvalues within
1e-8 relative, trace and density with the same seeds); one file written; refused options stay one paragraph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.models import build_model
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

QUICK = ["--samples", "150", "--batch-size", "50", "--top-k", "2", "--trace-matvecs", "9", "--density-probes", "2",
         "--density-steps", "10", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    kwargs = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [4]}
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=kwargs, weights=build_model("mlp", seed=0, **kwargs).state_dict(),
                               dataset="synthetic"), path)
    return path


def test_nproc_2_gives_the_nproc_1_report(checkpoint, tmp_path):
    runs = {}
    for n in (1, 2):
        result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--nproc", str(n), "--out", str(tmp_path / f"h{n}.json")])
        assert result.exit_code == 0, result.output
        runs[n] = json.loads((tmp_path / f"h{n}.json").read_text())
    one, two = runs[1], runs[2]
    assert two["config"]["nproc"] == 2
    assert all(abs(a - b) <= 1e-8 * abs(a) for a, b in zip(one["eigenvalues"], two["eigenvalues"]))
    assert two["hvps"] == one["hvps"]
    assert two["trace"]["estimate"] == pytest.approx(one["trace"]["estimate"], rel=1e-8)
    for key in ("nodes", "weights"):  # per probe
        for a, b in zip(one["density"][key], two["density"][key]):
            assert b == pytest.approx(a, rel=1e-7, abs=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h1.json", "h2.json"]


def test_nproc_with_measures_is_one_paragraph(checkpoint):
    result = CliRunner().invoke(main, ["hessian", str(checkpoint), *QUICK, "--nproc", "2", "--measures", "trace"])
    assert result.exit_code == 1 and "--measures" in result.output and "Traceback" not in result.output
