"""ClientSettings: defaults that fit the quick preset, validation with the flag to fix, a JSON-able record."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fedtrain.errors import ConfigError
from landscape.federated.settings import ClientSettings


def test_defaults_sample_clients_and_samples_and_round_trip_through_json():
    settings = ClientSettings()
    assert (settings.clients, settings.samples_per_client, settings.top_k, settings.max_matvecs) == (20, 32, 2, 40)
    assert json.loads(json.dumps(settings.to_dict())) == settings.to_dict()
    assert ClientSettings(plane_clients=[3, 7]).to_dict()["plane_clients"] == [3, 7]


@pytest.mark.parametrize("change, flag", [
    ({"clients": 0}, "--clients"), ({"samples_per_client": -1}, "--samples-per-client"), ({"top_k": 0}, "--top-k"),
    ({"trace_matvecs": 2}, "--trace-matvecs"), ({"plane_steps": 1}, "--plane-steps"), ({"tol": 0.0}, "--tol"),
    ({"plane_margin": -0.1}, "--plane-margin"), ({"weights": "best"}, "--weights"), ({"plane_clients": (2, 2)}, "--plane-clients"),
    ({"plane_clients": (1, 2, 3)}, "--plane-clients"), ({"device": "gpu"}, "device"), ({"seed": -1}, "--seed"),
])
def test_bad_values_name_the_flag(change, flag):
    with pytest.raises(ConfigError, match=flag):
        dataclasses.replace(ClientSettings(), **change)
