"""Models trained elsewhere: a state_dict of a class defined outside the package, with --model/--dataset or --data,
gives the same eigenvalues and losses as the same weights in a toolkit checkpoint; mistakes are one paragraph."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

HESSIAN = ["--samples", "80", "--batch-size", "40", "--top-k", "2", "--trace-matvecs", "6", "--density-probes", "1",
           "--density-steps", "5", "--quiet"]
SURFACE = ["--steps", "3", "--samples", "40", "--split", "test", "--plot", "contour", "--quiet"]

# The user's own code: a model class and a data loader in a file of their project, outside this package.
USER_CODE = textwrap.dedent('''
    import torch
    from torch import nn


    class TheirNet(nn.Module):
        def __init__(self, width=3):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, width), nn.Tanh(), nn.Linear(width, 10))

        def forward(self, x):
            return self.net(x)


    def load(split):
        from fedtrain.data import evaluation_tensors, load_dataset
        return evaluation_tensors(load_dataset("synthetic"), split)
''')


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The user's module on sys.path, their state_dict, and the same weights as a toolkit checkpoint."""
    folder = tmp_path_factory.mktemp("elsewhere")
    (folder / "their_project_models.py").write_text(USER_CODE)
    sys.path.insert(0, str(folder))
    from their_project_models import TheirNet

    torch.manual_seed(0)
    weights = TheirNet().state_dict()
    torch.save(weights, folder / "their_weights.pt")
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs={"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [3]},
                               weights=weights, dataset="synthetic"), folder / "ours.pt")
    yield {"state_dict": folder / "their_weights.pt", "checkpoint": folder / "ours.pt", "folder": folder}
    sys.path.remove(str(folder))


def run(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_hessian_of_a_state_dict_equals_the_toolkit_checkpoint(files):
    ours = run("hessian", files["checkpoint"], *HESSIAN)
    by_name = run("hessian", files["state_dict"], *HESSIAN, "--model", "their_project_models:TheirNet", "--dataset", "synthetic")
    by_loader = run("hessian", files["state_dict"], *HESSIAN, "--model", "their_project_models:TheirNet",
                    "--model-kwargs", '{"width": 3}', "--data", "their_project_models:load")
    builtin = run("hessian", files["state_dict"], *HESSIAN, "--model", "mlp", "--model-kwargs", '{"hidden": [3]}', "--dataset", "synthetic")
    for other in (by_name, by_loader, builtin):
        assert other["eigenvalues"] == ours["eigenvalues"] and other["trace"]["estimate"] == ours["trace"]["estimate"]
    assert by_loader["config"]["foreign"] == {"source": "state_dict", "model": "their_project_models:TheirNet",
                                              "model_kwargs": {"width": 3}, "dataset": None, "data": "their_project_models:load"}
    assert by_name["config"]["model"] == {"name": "their_project_models:TheirNet", "kwargs": {}}
    assert builtin["config"]["model"]["kwargs"] == {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [3]}
    assert "foreign" not in ours["config"] and by_name["config"]["checkpoint"] == str(files["state_dict"])


def test_plot_surface_of_a_state_dict_equals_the_toolkit_checkpoint(files, tmp_path):
    from landscape.surface.record import load_surface

    run("plot-surface", files["checkpoint"], *SURFACE, "--out", tmp_path / "ours")
    run("plot-surface", files["state_dict"], *SURFACE, "--out", tmp_path / "theirs", "--model", "their_project_models:TheirNet",
        "--data", "their_project_models:load")
    ours, theirs = load_surface(tmp_path / "ours" / "surface.npz"), load_surface(tmp_path / "theirs" / "surface.npz")
    assert (ours.value("test", "loss") == theirs.value("test", "loss")).all()
    assert theirs.metadata["foreign"]["data"] == "their_project_models:load"


@pytest.mark.parametrize(("extra", "message"), [
    ([], "is a plain PyTorch state_dict, not a fedlandscape checkpoint"),
    (["--model", "their_project_models:TheirNet", "--model-kwargs", '{"width": 4}', "--dataset", "synthetic"],
     r"do not fit model 'their_project_models:TheirNet': net.1.weight has shape \[3, 256\], the model \[4, 256\]"),
    (["--model", "their_project_models:Missing", "--dataset", "synthetic"], "has no attribute 'Missing'"),
    (["--model", "nowhere_module_xyz:Net", "--dataset", "synthetic"], "no module named 'nowhere_module_xyz' was found"),
    (["--model", "their_project_models:TheirNet"], "give exactly one of --dataset NAME and --data"),
    (["--dataset", "synthetic"], "describe a plain state_dict file and need --model too"),
    (["--model", "their_project_models:TheirNet", "--dataset", "synthetic", "--model-kwargs", "{width: 3}"], "is not valid JSON"),
])
def test_mistakes_are_one_paragraph_with_exit_1(files, extra, message):
    result = CliRunner().invoke(main, ["hessian", str(files["state_dict"]), *HESSIAN, *extra])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert __import__("re").search(message, result.stderr), result.stderr


def test_a_toolkit_checkpoint_given_with_model_is_named(files):
    result = CliRunner().invoke(main, ["hessian", str(files["checkpoint"]), "--model", "mlp", "--dataset", "synthetic"])
    assert result.exit_code == 1 and "is a fedlandscape checkpoint, not a plain state_dict" in result.stderr
