"""A reproduction that tracks sharpness: every run's config records the tracker (so train, resume and the SWA branches
build it), plans without tracking are unchanged, and the setting round-trips through plan.json."""

from __future__ import annotations

import dataclasses

import pytest

from fedtrain.errors import ConfigError
from landscape.hessian.tracking import SharpnessTracker
from landscape.report.presets import REPRODUCE_PRESETS, ReproduceSettings
from landscape.report.reproduce import _observers, plan_runs


def test_tracked_reproductions_record_the_tracker_in_every_run_and_untracked_plans_are_unchanged():
    smoke = REPRODUCE_PRESETS["smoke"]
    tracked = dataclasses.replace(smoke, track_sharpness=2)
    specs = plan_runs(tracked, 1, device="cpu")
    assert all(s.config.observers["sharpness"]["every"] == 2 for s in specs)
    observers = _observers(specs[0].config)
    assert len(observers) == 1 and isinstance(observers[0], SharpnessTracker) and observers[0].every == 2
    assert all(s.config.observers == {} and _observers(s.config) == [] for s in plan_runs(smoke, 1, device="cpu"))
    assert "track_sharpness" not in smoke.to_dict() and ReproduceSettings.from_dict(tracked.to_dict()) == tracked


def test_a_negative_tracking_interval_is_refused():
    with pytest.raises(ConfigError, match="track_sharpness must be a whole number of rounds >= 0"):
        dataclasses.replace(REPRODUCE_PRESETS["smoke"], track_sharpness=-1)
