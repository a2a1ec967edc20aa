"""Reproduction settings: typed analysis records, a JSON round trip for plan.json, no torch to list the presets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fedtrain.errors import ConfigError
from landscape.report.presets import REPRODUCE_PRESETS, ReproduceSettings
from landscape.settings import HessianSettings, SurfaceSettings


@pytest.mark.parametrize("name", list(REPRODUCE_PRESETS))
def test_presets_hold_settings_records_and_round_trip_through_json(name):
    settings = REPRODUCE_PRESETS[name]
    assert isinstance(settings.hessian, HessianSettings)
    assert isinstance(settings.surface, SurfaceSettings) and isinstance(settings.plane, SurfaceSettings)
    as_json = json.loads(json.dumps(settings.to_dict()))
    assert as_json["hessian"] == settings.hessian.to_dict() and as_json["plane"] == settings.plane.to_dict()
    assert ReproduceSettings.from_dict(as_json) == settings


def test_from_dict_refuses_what_is_not_a_reproduction():
    with pytest.raises(ConfigError, match="Not a reproduction's settings"):
        ReproduceSettings.from_dict({"splits": []})
    values = REPRODUCE_PRESETS["smoke"].to_dict()
    values["hessian"]["top_k"] = 0
    with pytest.raises(ConfigError, match="top_k"):
        ReproduceSettings.from_dict(values)


def test_listing_the_presets_imports_no_torch():
    code = "import sys; import landscape.report.presets; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda v: v["splits"][0].__setitem__(1, float("nan")), r"splits must be a list of \[name, alpha\] pairs"),
        (lambda v: v["splits"][0].__setitem__(1, "abc"), r"splits must be a list of \[name, alpha\] pairs"),
        (lambda v: v["splits"][0].__setitem__(1, -1.0), r"splits must be a list of \[name, alpha\] pairs"),
        (lambda v: v["splits"][0].__setitem__(1, True), r"splits must be a list of \[name, alpha\] pairs"),
        (lambda v: v["splits"].append(["heterogeneous", 1.0]), r"split names must differ"),
        (lambda v: v["splits"].append(["other", 1.0]), r"algorithms must list the runs of each split"),
        (lambda v: v["algorithms"]["homogeneous"][0].__setitem__(1, "false"), r"algorithms\['homogeneous'\] must be a list of \[algorithm, swa\] pairs"),
        (lambda v: v["algorithms"]["homogeneous"][0].__setitem__(0, "fedprox"), r"algorithms\['homogeneous'\]"),
        (lambda v: v.__setitem__("train_preset", "big"), r"train_preset must be one of quick, paper-cifar10, got 'big'"),
        (lambda v: v["train_overrides"].__setitem__("rounds", "x"), r"rounds \(--rounds\) must be an integer >= 1, got 'x'"),
        (lambda v: v["train_overrides"].__setitem__("seed", -1), r"seed \(--seed\) must be an integer from 0"),
        (lambda v: v["surface"].__setitem__("steps", 10**6), r"steps \(--steps\) must be at most 16,777,216|A grid of"),
        (lambda v: v["hessian"].__setitem__("tol", float("nan")), r"tol must be a positive number"),
    ],
)
def test_from_dict_refuses_each_bad_value_by_name_and_converts_nothing(change, match):
    values = json.loads(json.dumps(REPRODUCE_PRESETS["smoke"].to_dict()))
    change(values)
    with pytest.raises(ConfigError, match=match):
        ReproduceSettings.from_dict(values)


def test_a_plan_with_integer_alphas_reads_back_as_the_preset():
    values = json.loads(json.dumps(REPRODUCE_PRESETS["quick"].to_dict()))
    values["splits"] = [[name, int(alpha)] for name, alpha in values["splits"]]  # 100, as a hand-written plan may say
    assert ReproduceSettings.from_dict(values) == REPRODUCE_PRESETS["quick"]


def test_seeds_are_bounded_before_the_plan_is_enumerated():
    from landscape.report.reproduce import plan_runs

    for seeds in (0, 1001, 10**9, True, 2.0):
        with pytest.raises(ConfigError, match="--seeds must be an integer from 1 to 1000"):
            plan_runs(REPRODUCE_PRESETS["smoke"], seeds)
    assert len(plan_runs(REPRODUCE_PRESETS["smoke"], 1)) == 8
