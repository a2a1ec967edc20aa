"""reproduce --swa-collect / --client-sampling: training overrides that are part of the plan, and leave existing plans as they were."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fedtrain.errors import ConfigError
from landscape.report.presets import REPRODUCE_PRESETS
from landscape.report.reproduce import _with_overrides, plan_runs, reproduce


def test_overrides_reach_every_run_and_only_changes_enter_the_settings():
    smoke = REPRODUCE_PRESETS["smoke"]
    changed = _with_overrides(smoke, {"swa_collect": "reference", "client_sampling": "reference"})
    assert changed.train_overrides == {**smoke.train_overrides, "swa_collect": "reference", "client_sampling": "reference"}
    specs = plan_runs(changed, 1)
    assert {(s.config.swa_collect, s.config.client_sampling) for s in specs} == {("reference", "reference")}
    # the presets' own values (end, toolkit) change nothing: the plan stays the one written without the flags
    assert _with_overrides(smoke, {"swa_collect": "end", "client_sampling": "toolkit"}) is smoke
    assert _with_overrides(smoke, {}) is smoke


def test_an_override_is_checked_like_any_training_setting():
    with pytest.raises(ConfigError, match="client_sampling"):
        _with_overrides(REPRODUCE_PRESETS["smoke"], {"client_sampling": "numpy"})


def _started_smoke_plan(out):
    out.mkdir()
    (out / "plan.json").write_text(json.dumps({"preset": "smoke", "seeds": 1, "settings": REPRODUCE_PRESETS["smoke"].to_dict()}))


def test_a_started_reproduction_continues_without_the_flags_or_with_the_presets_values_and_refuses_others(tmp_path):
    out = tmp_path / "r"
    _started_smoke_plan(out)
    # accepted plans go on to the device check, which stops them here before any work
    for overrides in ({}, {"swa_collect": "end"}, {"client_sampling": "toolkit"}):
        with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
            reproduce("smoke", out, device="gpu0", train_overrides=overrides)
    with pytest.raises(ConfigError, match="other settings"):
        reproduce("smoke", out, device="gpu0", train_overrides={"swa_collect": "reference"})
    with pytest.raises(ConfigError, match="other settings"):
        reproduce("smoke", out, device="gpu0", train_overrides={"client_sampling": "reference"})
    assert sorted(p.name for p in out.iterdir()) == ["plan.json"]


def test_the_cli_passes_the_flags_as_training_overrides(tmp_path, monkeypatch):
    import landscape.report.reproduce as pipeline
    from fedlandscape_cli import main

    calls = []

    def fake(preset, out, **kwargs):
        calls.append((preset, kwargs["train_overrides"]))
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(pipeline, "reproduce", fake)
    runner = CliRunner()
    result = runner.invoke(main, ["reproduce", "--preset", "smoke", "--out", str(tmp_path / "r"), "--swa-collect", "reference",
                                  "--client-sampling", "reference"])
    assert result.exit_code == 1 and "stopped by the test" in result.output
    runner.invoke(main, ["reproduce", "--preset", "smoke", "--out", str(tmp_path / "r")])
    assert calls == [("smoke", {"swa_collect": "reference", "client_sampling": "reference"}), ("smoke", {})]
    bad = runner.invoke(main, ["reproduce", "--swa-collect", "middle", "--out", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "'middle' is not one of 'end', 'reference'" in bad.output


def test_the_rerun_commands_name_the_preset_seeds_flags_and_data(tmp_path):
    from pathlib import Path

    from landscape.report.reproduce import rerun_commands

    quick = REPRODUCE_PRESETS["quick"]
    assert rerun_commands("quick", 3, Path("runs/q"), quick) == [
        "landscape reproduce --preset quick --seeds 3 --out runs/q",
        "landscape figures runs/q/runs runs/q/planes --out runs/q/figures"]
    changed = _with_overrides(quick, {"swa_collect": "reference", "client_sampling": "reference"})
    assert rerun_commands("quick", 1, Path("my runs"), changed, data_dir="/data/x")[0] == (
        "landscape reproduce --preset quick --seeds 1 --out 'my runs' --swa-collect reference "
        "--client-sampling reference --data-dir /data/x")
    assert rerun_commands("custom", 1, Path("r"), quick)[0].startswith("# custom settings")
