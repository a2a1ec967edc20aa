"""landscape.info: each artefact kind recognised and summarised (how it was made, headline numbers, complete or not);
a foreign file is a one-paragraph error; the CLI prints text or --json."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.config import TrainConfig
from fedtrain.errors import DataFormatError
from fedtrain.io import write_json
from fedtrain.run import RunPaths, train
from landscape.hessian.analysis import analyze_checkpoint
from landscape.info import describe
from landscape.settings import HessianSettings, SurfaceSettings
from landscape.surface.api import surface_for_checkpoint
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> dict[str, Path]:
    """One artefact of each kind from a tiny run: run dir, checkpoints, state dict, Hessian report, surface, reproduction."""
    root = tmp_path_factory.mktemp("artefacts")
    config = TrainConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": [2]}, num_clients=4, samples_per_client=20,
                         clients_per_round=2, rounds=2, batch_size=10, lr=0.1, eval_every=1, last_k=1, seed=5,
                         algorithm="fedasam", eval_examples=50)
    run = root / "run"
    train(config, run)
    final = RunPaths(run).final
    report = analyze_checkpoint(final, HessianSettings(num_examples=40, batch_size=40, top_k=2, trace_matvecs=6,
                                                       density_probes=1, density_steps=4))
    write_json(root / "hessian.json", report.to_dict())
    surface_for_checkpoint(final, SurfaceSettings(steps=3, splits="test", num_examples=30), out=root / "surface")
    torch.save(torch.load(final, weights_only=True)["weights"], root / "state_dict.pt")
    repro = root / "repro"
    shutil.copytree(run, repro / "runs" / "heterogeneous" / "fedasam" / "seed0")
    write_json(repro / "plan.json", {"preset": "smoke", "seeds": 1, "settings": {
        "train_preset": "smoke", "splits": [["heterogeneous", 0.0]], "algorithms": {"heterogeneous": [["fedavg", False], ["fedasam", False]]}}})
    return {"run": run, "final": final, "hessian": root / "hessian.json", "surface": root / "surface" / "surface.npz",
            "state_dict": root / "state_dict.pt", "reproduction": repro, "round1": RunPaths(run).latest}


def test_a_final_checkpoint_says_how_it_was_made(artefacts):
    info = describe(artefacts["final"])
    assert info.kind == "checkpoint" and info.complete and info.status == "round 2 of 2 (final)"
    assert info.made["model"]["name"] == "mlp" and info.made["dataset"] == "synthetic" and info.made["seed"] == 5
    assert info.made["method"]["algorithm"] == "fedasam" and info.made["method"]["rho"] == 0.7 and info.made["round"] == 2
    assert len(info.made["sha256"]) == 64 and "torch" in info.made["versions"] and info.headline["parameters"] > 0
    assert info.made["partition"] is not None


def test_a_run_directory_reports_its_summary_and_a_cut_run_is_incomplete(artefacts, tmp_path):
    info = describe(artefacts["run"])
    assert info.kind == "run" and info.complete and info.status == "complete"
    assert info.made["method"]["algorithm"] == "fedasam" and info.made["rounds_done"] == 2 and "final.pt" in info.made["checkpoints"]
    summary = json.loads((artefacts["run"] / "summary.json").read_text())
    assert info.headline == {k: v for k, v in summary.items() if not isinstance(v, (list, dict))} and info.headline
    cut = shutil.copytree(artefacts["run"], tmp_path / "cut")
    (cut / "summary.json").unlink()
    info = describe(cut)
    assert not info.complete and "stopped at round 2 of 2" in info.status and "--resume" in info.status


def test_a_hessian_report_gives_its_eigenvalues_and_source(artefacts):
    info = describe(artefacts["hessian"])
    report = json.loads(artefacts["hessian"].read_text())
    assert info.kind == "hessian-report" and info.headline["eigenvalues"] == report["eigenvalues"]
    assert info.made["checkpoint_sha256"] == report["config"]["checkpoint_sha256"] and info.made["seeds"]["lanczos"] == 0
    assert info.headline["products"] == report["hvps"]["total"] and info.complete == all(report["converged"])


def test_a_surface_tells_its_grid_and_losses_and_a_partial_one_is_incomplete(artefacts, tmp_path):
    from landscape.surface.record import load_surface, save_surface

    info = describe(artefacts["surface"])
    surface = load_surface(artefacts["surface"])
    assert info.kind == "surface" and info.complete and info.status == "all 9 grid points computed"
    assert info.made["shape"] == [3, 3] and info.made["kind"] == "random"
    assert info.headline["test_loss_min"] == float(surface.value("test", "loss").min())
    assert info.headline["test_loss_centre"] == float(surface.value("test", "loss")[1, 1])
    done = surface.done.copy()
    done[2, :] = False
    partial = replace(surface, done=done, metadata={**surface.metadata, "complete": False})
    save_surface(partial, tmp_path / "partial.npz")
    info = describe(tmp_path / "partial.npz")
    assert not info.complete and info.status.startswith("partial: 6 of 9 grid points")


def test_a_state_dict_and_a_reproduction_folder(artefacts):
    info = describe(artefacts["state_dict"])
    assert info.kind == "state_dict" and "--model" in info.status and info.headline["tensors"] == 4
    info = describe(artefacts["reproduction"])
    assert info.kind == "reproduction" and not info.complete and info.made["runs_planned"] == 2
    assert info.headline == {"runs_trained": 1, "runs_analysed": 0} and "1 of 2 runs trained" in info.status


def test_foreign_files_are_one_paragraph_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.json").write_text('{"a": 1}')
    for path in (tmp_path / "notes.txt", tmp_path / "other.json", tmp_path):
        with pytest.raises(DataFormatError, match="is not something this toolkit wrote: landscape info reads checkpoints"):
            describe(path)
    with pytest.raises(DataFormatError, match="no such file or folder"):
        describe(tmp_path / "missing.pt")


def test_cli_prints_text_or_json_and_errors_exit_1(artefacts, tmp_path):
    result = CliRunner().invoke(main, ["info", str(artefacts["final"])])
    assert result.exit_code == 0 and result.output.startswith(f"checkpoint  {artefacts['final']}  [complete]\n  round 2 of 2 (final)\n")
    assert "how it was made:" in result.output and "headline numbers:" in result.output
    result = CliRunner().invoke(main, ["info", str(artefacts["hessian"])])
    eigenvalues = json.loads(artefacts["hessian"].read_text())["eigenvalues"]
    assert f"eigenvalues        [{float(f'{eigenvalues[0]:.6g}')}, " in result.output  # 6 digits in the text view
    result = CliRunner().invoke(main, ["info", str(artefacts["surface"]), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["kind"] == "surface"
    (tmp_path / "x.txt").write_text("x")
    result = CliRunner().invoke(main, ["info", str(tmp_path / "x.txt")])
    assert result.exit_code == 1 and "is not something this toolkit wrote" in result.stderr and "Traceback" not in result.output


def test_a_sweep_folder_lists_its_runs_and_best_points_and_a_cut_one_is_incomplete(tmp_path):
    from fedtrain.sweep import SweepGrid, sweep

    base = TrainConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": [2]}, partition="iid", num_clients=4,
                       samples_per_client=20, clients_per_round=2, rounds=2, batch_size=10, lr=0.1, eval_every=1,
                       last_k=1, validation=200, device="cpu")
    record = sweep(base, SweepGrid(algorithms=("fedsam",), rhos=(0.05, 0.5)), tmp_path / "s")
    info = describe(tmp_path / "s")
    best = record["best"]["per_algorithm"]["fedsam"]
    assert info.kind == "sweep" and info.complete and info.made["runs_planned"] == 2 and info.made["validation"] == 200
    assert info.headline["best fedsam"].startswith(f"rho={best['rho']:g} lr=0.1: {100 * best['mean']:.2f}%")
    (tmp_path / "s" / "sweep-plan.json").rename(tmp_path / "s" / "plan.json")  # a sweep started before the plan had its own name
    assert describe(tmp_path / "s").kind == "sweep"
    shutil.rmtree(tmp_path / "s" / "runs" / "fedsam_rho0.5_lr0.1-seed0")
    cut = describe(tmp_path / "s")
    assert not cut.complete and cut.status.startswith("1 of 2 runs trained")
