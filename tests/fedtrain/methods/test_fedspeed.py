"""FedSpeed, one client step and one server step against the update rule computed by hand (FL-Simulator's FedSpeed)."""

from __future__ import annotations

import pytest
import torch

from fedtrain.client import ClientUpdate
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.methods import ServerContext, load_method
from fedtrain.methods.fedspeed import FedSpeed
from tests.fedtrain.methods._tiny import B0, W0, as_flat, as_state, clip, context, flat, global_params, sam_gradient, shard

LR, RHO, WD, LAMB = 0.5, 0.05, 0.01, 0.3
DUAL = [0.2, -0.1, 0.05, 0.3, -0.4, 0.1]  # the client's h_i


def _expected_delta(dual: list[float], max_norm: float) -> list[float]:
    """w' - w with w' = w - lr (clip(g(w + eps) + lamb (h - w)) + (wd + lamb) w), by hand."""
    w = flat(W0, B0)
    g = [v + LAMB * (h - a) for v, h, a in zip(sam_gradient(RHO), dual, w)]
    if max_norm > 0:
        g = clip(g, max_norm)
    return [-LR * (v + (WD + LAMB) * a) for v, a in zip(g, w)]


@pytest.mark.parametrize("dual, max_norm", [
    (None, 0.0),     # a new client: h = 0, the correction is -lamb w_t
    (DUAL, 0.0),     # its dual
    (DUAL, 0.05),    # and FL-Simulator's clipping, active
])
def test_one_client_step_is_sam_with_the_prox_correction_and_the_dual_gains_the_delta(dual, max_norm):
    method = FedSpeed.from_args({"lamb": LAMB, "max_grad_norm": max_norm})
    before = global_params()
    state = {} if dual is None else {"h": as_state(dual)}
    update, new = method.client_update(before, shard(), state, context(lr=LR, rho=RHO, weight_decay=WD, server_state={}))
    delta = _expected_delta(dual or [0.0] * 6, max_norm)
    assert as_flat(update.delta) == pytest.approx(delta, rel=1e-12, abs=1e-15)
    assert as_flat(new["h"]) == pytest.approx([h + d for h, d in zip(dual or [0.0] * 6, delta)], rel=1e-12, abs=1e-15)
    assert all(torch.equal(before[k], global_params()[k]) for k in before)  # the global weights are not modified


def test_the_hand_computed_cases_differ_without_the_dual_or_the_clipping():
    assert _expected_delta(DUAL, 0.0) != pytest.approx(_expected_delta([0.0] * 6, 0.0), rel=1e-6)
    assert _expected_delta(DUAL, 0.05) != pytest.approx(_expected_delta(DUAL, 0.0), rel=1e-6)


def test_one_server_step_is_the_mean_model_plus_the_mean_dual_over_all_clients():
    w = global_params()
    d1, d2 = [0.1, 0.2, -0.3, 0.4, 0.0, -0.6], [0.7, -0.2, 0.1, 0.0, 0.3, 0.2]
    h_sum = [0.5, -0.5, 0.2, 0.0, 0.1, 0.3]
    names = as_state(d1)  # the clients' duals name the trainable weights
    updates = [ClientUpdate(delta=as_state(d1), num_examples=4, client_state={"h": names}),
               ClientUpdate(delta=as_state(d2), num_examples=8, client_state={"h": names})]
    config = TrainConfig(algorithm="fedspeed", num_clients=10, clients_per_round=2)
    params, state = load_method(config).server_step(w, updates, {"h_sum": as_state(h_sum)}, ServerContext(3, 0.5, (1, 6), config))
    new_sum = [s + a + b for s, a, b in zip(h_sum, d1, d2)]
    mean = [(4 * a + 8 * b) / 12 for a, b in zip(d1, d2)]
    assert as_flat(state["h_sum"]) == pytest.approx(new_sum, rel=1e-12)
    assert as_flat(params) == pytest.approx([w0 + m + s / 10 for w0, m, s in zip(flat(W0, B0), mean, new_sum)], rel=1e-12)
    assert set(state) == {"h_sum"}


def test_a_negative_lamb_is_refused_with_the_setting_named():
    with pytest.raises(ConfigError, match="fedspeed.*lamb.*>= 0"):
        FedSpeed.from_args({"lamb": "-0.1"})
