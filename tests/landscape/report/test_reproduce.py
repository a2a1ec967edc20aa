"""The end-to-end reproduction on the synthetic smoke setting: files, agreement with per-stage outputs, resumability."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from fedtrain.checkpoint import load_checkpoint
from fedtrain.errors import ConfigError
from landscape.report.presets import REPRODUCE_PRESETS
from landscape.report.reproduce import plan_runs, reproduce
from landscape.surface.record import load_surface

FIGURES = ["surfaces_3d", "sharpness", "spectral_density", "accuracy", "plane_heterogeneous-seed0"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny models run faster on one thread, and two threads thrash when the machine is busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, _one_thread):
    out = tmp_path_factory.mktemp("reproduction")
    lines: list[str] = []
    record = reproduce("smoke", out, seeds=1, log=lines.append, progress=SMOKE_PROGRESS.append)
    return out, record, lines


SMOKE_PROGRESS: list = []  # the progress events of the module's smoke reproduction (one run for every test)


def test_progress_counts_every_stage_once_up_to_the_planned_total(smoke):
    events = SMOKE_PROGRESS
    specs = plan_runs(REPRODUCE_PRESETS["smoke"], 1)
    planned = 3 * len(specs) + 2  # train, hessian and surface of every run, one plane, the figures
    assert [e.done for e in events] == sorted(e.done for e in events) and events[-1].done == events[-1].total == planned
    assert {e.total for e in events} == {planned} and all(e.stage == "reproduce" and e.unit == "stages" for e in events)
    details = [e.detail for e in events]
    assert any(d.startswith("train heterogeneous fedavg seed 0 (1/") and ", round 1/" in d for d in details)
    assert any(d.startswith("hessian ") and " products" in d for d in details)
    assert any(d.startswith("surface ") and " grid points" in d for d in details)
    assert any(d.startswith("plane ") for d in details) and any(d.startswith("figures ") for d in details)
    assert all(e.eta is None or e.eta >= 0 for e in events) and events[-1].eta == 0.0


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_plan_branches_every_swa_run_off_its_plain_run():
    specs = plan_runs(REPRODUCE_PRESETS["smoke"], seeds=2)
    assert len(specs) == 2 * (6 + 2)
    first_swa = next(i for i, s in enumerate(specs) if s.swa)
    assert all(not s.swa for s in specs[:first_swa]) and all(s.swa for s in specs[first_swa:])
    plain = [s for s in specs if not s.swa]
    assert all(s.config.swa_start_round in s.config.checkpoint_rounds for s in plain)
    hetero = {(s.algorithm, s.swa) for s in specs if s.split == "heterogeneous"}
    assert hetero == {(a, w) for a in ("fedavg", "fedsam", "fedasam") for w in (False, True)}


def test_every_stage_writes_its_files(smoke):
    out, record, lines = smoke
    runs = sorted(p.parent for p in (out / "runs").rglob("summary.json"))
    assert len(runs) == 8
    for run in runs:
        assert (run / "checkpoints" / "final.pt").is_file()
        assert (run / "analysis" / "hessian.json").is_file()
        assert load_surface(run / "analysis" / "surface.npz").complete
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").is_file() and (out / "figures" / f"{name}.pdf").is_file()
    for name in ("results.md", "results.csv", "claims.md"):
        assert (out / "figures" / name).is_file()
    assert json.loads((out / "reproduce.json").read_text())["invocations"][0]["stages"] == record["stages"]
    assert any(line.startswith("[train] heterogeneous fedasam-swa seed 0 (from the SWA start") for line in lines)


def test_every_stage_records_the_device_it_computed_on(smoke):
    out, record, _ = smoke
    assert record["device"] == "auto" and record["device_used"]["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    run = next(p.parent for p in (out / "runs").rglob("summary.json"))
    assert json.loads((run / "summary.json").read_text())["device_used"] == record["device_used"]
    assert json.loads((run / "analysis" / "hessian.json").read_text())["config"]["device_used"]["device"] == record["device_used"]["device"]
    assert load_surface(run / "analysis" / "surface.npz").metadata["device_used"]["device"] == record["device_used"]["device"]
    assert json.loads((out / "plan.json").read_text())["settings"]["hessian"]["device"] == "auto"


def test_table_numbers_are_the_per_stage_numbers(smoke):
    out, _, _ = smoke
    rows = {(r["split"], r["algorithm"]): r for r in _read_csv(out / "figures" / "results.csv")}
    assert len(rows) == 8
    names = {"fedavg": "FedAvg", "fedsam": "FedSAM", "fedasam": "FedASAM"}
    split_names = {"heterogeneous": "α = 0", "homogeneous": "α = 100"}
    for run in (out / "runs").rglob("summary.json"):
        folder = run.parent
        split, name = folder.parts[-3], folder.parts[-2]
        algorithm = names[name.removesuffix("-swa")] + ("+SWA" if name.endswith("-swa") else "")
        row = rows[(split_names[split], algorithm)]
        summary = json.loads(run.read_text())
        hessian = json.loads((folder / "analysis" / "hessian.json").read_text())
        assert float(row["accuracy"]) == pytest.approx(summary["last_k_mean_accuracy"], rel=1e-12)
        assert float(row["lambda_1"]) == pytest.approx(hessian["eigenvalues"][0], rel=1e-12)
        assert float(row["ratio"]) == pytest.approx(hessian["eigenvalues"][0] / hessian["eigenvalues"][4], rel=1e-12)
        assert float(row["trace"]) == pytest.approx(hessian["trace"]["estimate"], rel=1e-12)
        assert float(row["trace_stderr"]) == pytest.approx(hessian["trace"]["stderr"], rel=1e-12)
        assert algorithm in (out / "figures" / "results.md").read_text()


def test_swa_runs_share_their_plain_twin_history_until_the_swa_start(smoke):
    out, _, _ = smoke
    folder = out / "runs" / "heterogeneous"
    plain = [json.loads(l) for l in (folder / "fedasam" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    swa = [json.loads(l) for l in (folder / "fedasam-swa" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    start = load_checkpoint(folder / "fedasam-swa" / "seed0" / "checkpoints" / "final.pt").config
    start_round = int(start["swa_start"] * start["rounds"])
    before = [(m["round"], m["test_accuracy"]) for m in plain if m["round"] <= start_round]
    assert before and before == [(m["round"], m["test_accuracy"]) for m in swa if m["round"] <= start_round]
    assert load_checkpoint(folder / "fedasam-swa" / "seed0" / "checkpoints" / "final.pt").has_swa


def test_plane_holds_the_three_models_at_their_coordinates(smoke):
    out, _, _ = smoke
    plane = load_surface(out / "planes" / "heterogeneous-seed0" / "surface.npz")
    assert plane.metadata["labels"] == ["FedAvg", "FedASAM", "FedASAM+SWA"]
    coordinates = plane.metadata["directions"]["model_coordinates"]
    assert coordinates[0] == [0.0, 0.0] and len(coordinates) == 3


def test_a_rerun_after_completion_only_redraws(smoke):
    out, _, _ = smoke
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    record = reproduce("smoke", out, seeds=1)
    assert all(s["skipped"] for s in record["stages"] if s["stage"] != "figures")
    history = json.loads((out / "reproduce.json").read_text())["invocations"]
    assert len(history) == 2 and history[-1] == json.loads(json.dumps(record)) and not history[0]["stages"][0]["skipped"]
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()} == before


def test_a_rerun_with_other_settings_is_refused(smoke):
    out, _, _ = smoke
    with pytest.raises(ConfigError, match="other settings"):
        reproduce("smoke", out, seeds=2)
    with pytest.raises(ConfigError, match="Unknown reproduction preset"):
        reproduce("cifar-huge", out)


def test_an_interrupted_stage_is_finished_on_rerun(smoke, tmp_path):
    out, _, _ = smoke
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = copy / "runs" / "homogeneous" / "fedasam" / "seed0"
    (victim / "analysis" / "hessian.json").unlink()
    (victim / "summary.json").unlink()
    (victim / "checkpoints" / "final.pt").unlink()
    record = reproduce("smoke", copy, seeds=1)
    redone = [(s["stage"], s["what"]) for s in record["stages"] if not s["skipped"]]
    assert ("train", "homogeneous fedasam seed 0 (resumed)") in redone
    assert ("hessian", "homogeneous fedasam seed 0") in redone
    original = load_checkpoint(out / "runs" / "homogeneous" / "fedasam" / "seed0" / "checkpoints" / "final.pt")
    again = load_checkpoint(victim / "checkpoints" / "final.pt")
    assert all(torch.equal(original.weights[k], again.weights[k]) for k in original.weights)


def test_figures_command_redraws_from_finished_runs_without_training(smoke, tmp_path):
    from click.testing import CliRunner

    from fedlandscape_cli import main

    out, _, _ = smoke
    result = CliRunner().invoke(main, ["figures", str(out / "runs"), str(out / "planes"), "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    for name in FIGURES:
        assert (tmp_path / "f" / f"{name}.png").is_file()
    assert (tmp_path / "f" / "results.csv").read_text() == (out / "figures" / "results.csv").read_text()


def test_a_plane_is_written_once_with_its_labels_and_the_runs_are_collected_once(smoke, tmp_path, monkeypatch):
    import shutil

    import landscape.report.reproduce as pipeline
    import landscape.surface.record as record_module

    out, _, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "planes")
    writes, collected = [], []
    real_write, real_collect = record_module.atomic_write_bytes, pipeline.collect_runs
    monkeypatch.setattr(record_module, "atomic_write_bytes", lambda path, data: writes.append(path) or real_write(path, data))
    monkeypatch.setattr(pipeline, "collect_runs", lambda paths: collected.append(paths) or real_collect(paths))
    record = reproduce("smoke", copy, seeds=1)
    assert [s["what"].split(" (")[0] for s in record["stages"] if not s["skipped"] and s["stage"] == "plane"] == ["heterogeneous seed 0"]
    target = copy / "planes" / "heterogeneous-seed0" / "surface.npz"
    assert writes.count(target) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["surface.npz"]
    assert load_surface(target).metadata["labels"] == ["FedAvg", "FedASAM", "FedASAM+SWA"]
    assert len(collected) == 1


def test_a_plan_written_before_the_settings_records_is_still_continued(smoke, tmp_path):
    import shutil

    from landscape.settings import HessianSettings, SurfaceSettings

    out, _, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    plan = json.loads((copy / "plan.json").read_text())
    # plans used to list only the analysis keywords a preset changed
    for key, defaults in (("hessian", HessianSettings()), ("surface", SurfaceSettings()), ("plane", SurfaceSettings())):
        full = plan["settings"][key]
        plan["settings"][key] = {k: v for k, v in full.items() if json.dumps(v) != json.dumps(defaults.to_dict()[k])}
    assert len(plan["settings"]["hessian"]) < len(HessianSettings().to_dict())
    (copy / "plan.json").write_text(json.dumps(plan))
    record = reproduce("smoke", copy, seeds=1)
    assert all(s["skipped"] for s in record["stages"] if s["stage"] != "figures")
    plan["settings"]["hessian"]["top_k"] = 3
    (copy / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ConfigError, match="other settings"):
        reproduce("smoke", copy, seeds=1)


@pytest.mark.parametrize("saved_plan", ["figures/quick-one-seed/plan.json",
                                        "tests/landscape/report/data/quick-plan-before-settings-records.json"])
def test_the_committed_quick_plans_still_ask_for_the_quick_preset(saved_plan):
    """The committed one-seed quick reproduction's plan, and one saved before the settings records existed, continue."""
    from pathlib import Path

    from landscape.report.reproduce import _same_plan

    saved = json.loads((Path(__file__).parents[3] / saved_plan).read_text())
    if saved_plan.startswith("tests/"):
        assert "points_per_pass" not in saved["settings"]["surface"]  # written before the settings records
    quick = {"preset": "quick", "seeds": 1, "settings": REPRODUCE_PRESETS["quick"].to_dict()}
    assert _same_plan(saved, quick)
    assert not _same_plan(saved, {**quick, "seeds": 2})


def test_the_committed_reproduction_plan_is_the_fashion_mnist_preset_with_three_seeds():
    from pathlib import Path

    from landscape.report.reproduce import _same_plan

    saved = json.loads((Path(__file__).parents[3] / "figures/plan.json").read_text())
    plan = {"preset": "fashion-mnist", "seeds": 3, "settings": REPRODUCE_PRESETS["fashion-mnist"].to_dict()}
    assert _same_plan(saved, plan)
    assert not _same_plan(saved, {**plan, "seeds": 1})


def test_the_report_page_holds_the_figures_claims_plan_timings_and_commands(smoke):
    import base64
    import html
    import re

    from landscape.report.claims import check_claims
    from landscape.plots.paper import collect_runs, results_table

    out, record, _ = smoke
    page = (out / "figures" / "report.html").read_text()
    assert [str(out / "figures" / "report.html")] == json.loads((out / "reproduce.json").read_text())["invocations"][0]["figures"]["report"]
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert sorted(name for name, _ in images) == sorted(FIGURES)
    for name, data in images:
        assert base64.b64decode(data) == (out / "figures" / f"{name}.png").read_bytes()
    for claim in check_claims(results_table(collect_runs([out / "runs"]))):
        assert html.escape(claim.text) in page and html.escape(claim.verdict) in page
    assert "&quot;train_preset&quot;: &quot;quick&quot;" in page  # plan.json's settings
    assert f"landscape reproduce --preset smoke --seeds 1 --out {out}" in page
    assert "SWA collection point" in page and "git_commit" in page and "<td>train</td>" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_figures_command_writes_the_report_page_of_its_runs(smoke, tmp_path):
    from click.testing import CliRunner

    from fedlandscape_cli import main

    out, _, _ = smoke
    target = tmp_path / "f"
    result = CliRunner().invoke(main, ["figures", str(out / "runs"), str(out / "planes"), "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert f"wrote {target / 'report.html'}" in result.output
    page = (target / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert f"landscape figures {out / 'runs'} {out / 'planes'} --out {target}" in page
    assert "<th>algorithm</th>" in page and "FedASAM+SWA" in page and "&quot;algorithm&quot;: &quot;fedasam&quot;" in page


def test_chromium_shows_every_figure_and_the_table_of_the_reproductions_page(smoke):
    import base64
    import re

    from tests.landscape.report.test_html import _browser, _chromium

    if _chromium() is None:
        import os

        if not os.environ.get("CI"):
            pytest.skip("Chromium is not installed (apt-get install -y chromium); CI installs it and runs this")
    out, _, _ = smoke
    dom = _browser("--dump-dom", (out / "figures" / "report.html").as_uri())
    assert dom.returncode == 0, dom.stderr
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', dom.stdout)
    assert sorted(name for name, _ in images) == sorted(FIGURES)
    assert all(base64.b64decode(data) == (out / "figures" / f"{name}.png").read_bytes() for name, data in images)
    table = re.search(r'<section id="results">.*?<table>(.*?)</table>', dom.stdout, re.S)
    assert table is not None and "<th>algorithm</th>" in table.group(1) and "FedASAM+SWA" in table.group(1)
