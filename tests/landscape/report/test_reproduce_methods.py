"""``reproduce --methods / --splits``: which runs a reproduction trains, its plan, and the figures and table of all its methods."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.errors import ConfigError
from landscape.report.claims import check_claims
from landscape.report.presets import REPRODUCE_PRESETS, ReproduceSettings, parse_method, restrict_splits
from landscape.report.reproduce import plan_runs, reproduce

METHODS = ("fedavg", "fedlesam", "fedgloss")


@pytest.fixture(scope="module")
def methods_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and the machine is shared
    try:
        out = tmp_path_factory.mktemp("methods")
        reproduce("smoke", out, methods=METHODS, splits=("heterogeneous",))
        yield out
    finally:
        torch.set_num_threads(threads)


def test_methods_replace_every_splits_algorithms_and_plus_swa_adds_the_swa_run():
    settings = dataclasses.replace(REPRODUCE_PRESETS["smoke"], methods=("fedavg", "fedlesam", "fedlesam+swa"))
    specs = plan_runs(settings, seeds=1)
    assert sorted((s.split, s.algorithm, s.swa) for s in specs) == sorted(
        (split, a, swa) for split in ("heterogeneous", "homogeneous") for a, swa in
        (("fedavg", False), ("fedlesam", False), ("fedlesam", True)))
    assert [s.swa for s in specs] == sorted(s.swa for s in specs)  # plain runs first: the SWA run branches off its twin


def test_the_plan_records_methods_only_when_given_so_started_reproductions_keep_their_plan():
    preset = REPRODUCE_PRESETS["quick"]
    assert "methods" not in preset.to_dict() and preset.runs("heterogeneous") == preset.algorithms["heterogeneous"]
    chosen = dataclasses.replace(restrict_splits(preset, ("heterogeneous",)), methods=METHODS)
    assert chosen.to_dict()["methods"] == list(METHODS) and [s for s, _ in chosen.splits] == ["heterogeneous"]
    assert ReproduceSettings.from_dict(json.loads(json.dumps(chosen.to_dict()))) == chosen


def test_parse_method_reads_swa_and_import_paths():
    assert parse_method("fedgloss") == ("fedgloss", False) and parse_method("fedavg+swa") == ("fedavg", True)
    assert parse_method("mypkg.mine:Method") == ("mypkg.mine:Method", False)


@pytest.mark.parametrize("change, match", [
    (dict(methods=("fedavg", "fedprox")), "unknown method 'fedprox'.*fedlesam"),
    (dict(methods=("fedavg", "fedavg")), "methods must differ"),
    (dict(methods="fedavg"), "methods must be a list"),
])
def test_bad_methods_are_refused_with_the_choices(change, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(REPRODUCE_PRESETS["smoke"], **change)


def test_an_unknown_split_is_refused_naming_the_presets_splits():
    with pytest.raises(ConfigError, match="unknown split.*iid.*heterogeneous, homogeneous"):
        restrict_splits(REPRODUCE_PRESETS["smoke"], ("iid",))


def test_the_table_and_figures_cover_every_method(methods_run):
    with open(methods_run / "figures" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["algorithm"] for r in rows] == ["FedAvg", "FedLESAM", "FedGloSS"]
    assert all(float(r["lambda_1"]) > 0 and 0 <= float(r["accuracy"]) <= 1 for r in rows)
    for method in METHODS:
        assert (methods_run / "runs" / "heterogeneous" / method / "seed0" / "analysis" / "hessian.json").is_file()
    assert not (methods_run / "runs" / "homogeneous").exists()
    assert (methods_run / "figures" / "sharpness.png").is_file() and (methods_run / "figures" / "accuracy.png").is_file()
    plan = json.loads((methods_run / "plan.json").read_text())
    assert plan["settings"]["methods"] == list(METHODS) and plan["settings"]["splits"] == [["heterogeneous", 0.0]]
    claims = (methods_run / "figures" / "claims.md").read_text()
    for method in ("FedLESAM", "FedGloSS"):
        assert f"{method} reaches a lower λ_max (flatter) than FedAvg" in claims
        assert f"{method} reaches higher test accuracy than FedAvg" in claims


def test_each_later_method_is_judged_against_fedavg_on_the_heterogeneous_split():
    rows = [{"split": "α = 0", "algorithm": a, "accuracy": acc, "lambda_1": lam, "ratio": 2.0}
            for a, acc, lam in (("FedAvg", 0.5, 30.0), ("FedLESAM", 0.4, 20.0), ("FedGloSS", 0.6, 40.0), ("FedGloSS+SWA", 0.7, 5.0))]
    verdicts = {c.text: c.verdict for c in check_claims(rows)}
    assert verdicts["At α = 0, FedLESAM reaches a lower λ_max (flatter) than FedAvg."] == "held"
    assert verdicts["At α = 0, FedLESAM reaches higher test accuracy than FedAvg."] == "did not hold"
    assert verdicts["At α = 0, FedGloSS reaches a lower λ_max (flatter) than FedAvg."] == "did not hold"
    assert verdicts["At α = 0, FedGloSS reaches higher test accuracy than FedAvg."] == "held"
    assert not any("FedGloSS+SWA reaches" in text or "FedAvg reaches" in text for text in verdicts)


def test_a_rerun_with_the_same_methods_continues_and_other_methods_are_refused(methods_run):
    record = reproduce("smoke", methods_run, methods=METHODS, splits=("heterogeneous",))
    assert all(s["skipped"] for s in record["stages"] if s["stage"] != "figures")
    with pytest.raises(ConfigError, match="other settings"):
        reproduce("smoke", methods_run, methods=("fedavg", "fedlesam"), splits=("heterogeneous",))


def test_the_cli_refuses_an_unknown_method_in_one_paragraph(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--preset", "smoke", "--methods", "fedavg,nosuch", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "unknown method 'nosuch'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "plan.json").exists()


def test_the_rerun_command_names_the_splits_and_methods():
    from pathlib import Path

    from landscape.report.reproduce import rerun_commands

    chosen = dataclasses.replace(restrict_splits(REPRODUCE_PRESETS["quick"], ("heterogeneous",)), methods=("fedavg", "fedlesam+swa"))
    assert rerun_commands("quick", 1, Path("runs/m"), chosen)[0] == (
        "landscape reproduce --preset quick --seeds 1 --out runs/m --splits heterogeneous --methods fedavg,fedlesam+swa")
    assert "--methods" not in rerun_commands("quick", 1, Path("runs/q"), REPRODUCE_PRESETS["quick"])[0]
