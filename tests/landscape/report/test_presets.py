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
