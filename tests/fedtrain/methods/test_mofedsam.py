"""MoFedSAM, one client step and one server step against the update rule computed by hand (FL-Simulator's MoFedSAM)."""

from __future__ import annotations

import pytest
import torch

from fedtrain.client import ClientUpdate
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.methods import ServerContext, load_method
from fedtrain.methods.mofedsam import MoFedSAM
from tests.fedtrain.methods._tiny import W0, B0, as_flat, as_state, clip, context, flat, global_params, sam_gradient, shard

LR, RHO, WD, ALPHA = 0.5, 0.05, 0.01, 0.3
DIRECTION = [0.2, -0.1, 0.05, 0.3, -0.4, 0.1]


def _expected_delta(direction: list[float] | None, max_norm: float) -> list[float]:
    """w' - w with w' = w - lr (clip(alpha g(w + eps) + (1 - alpha) D) + wd w)."""
    g = [ALPHA * v for v in sam_gradient(RHO)]
    if direction is not None:
        g = [a + (1 - ALPHA) * d for a, d in zip(g, direction)]
    if max_norm > 0:
        g = clip(g, max_norm)
    return [-LR * (v + WD * w) for v, w in zip(g, flat(W0, B0))]


@pytest.mark.parametrize("direction, max_norm", [
    (None, 0.0),          # round 0: no direction yet, the SAM gradient scaled by alpha alone
    (DIRECTION, 0.0),     # the direction mixed in
    (DIRECTION, 0.05),    # and FL-Simulator's clipping (active: the mixed gradient's norm is 0.33)
])
def test_one_client_step_is_the_mixed_sam_step(direction, max_norm):
    method = MoFedSAM.from_args({"alpha": ALPHA, "max_grad_norm": max_norm})
    server_state = {} if direction is None else {"direction": as_state(direction)}
    before = global_params()
    update, state = method.client_update(before, shard(), {}, context(lr=LR, rho=RHO, weight_decay=WD, server_state=server_state))
    assert as_flat(update.delta) == pytest.approx(_expected_delta(direction, max_norm), rel=1e-12, abs=1e-15)
    assert state == {} and update.num_examples == 3
    assert all(torch.equal(before[k], global_params()[k]) for k in before)  # the global weights are not modified


def test_the_clipping_case_does_clip():
    assert _expected_delta(DIRECTION, 0.05) != pytest.approx(_expected_delta(DIRECTION, 0.0))


def test_one_server_step_is_fedavg_and_the_direction_is_the_update_over_local_steps_and_lr():
    w = global_params()
    d1, d2 = [0.1, 0.2, -0.3, 0.4, 0.0, -0.6], [0.7, -0.2, 0.1, 0.0, 0.3, 0.2]
    updates = [ClientUpdate(delta=as_state(d1), num_examples=4), ClientUpdate(delta=as_state(d2), num_examples=8)]
    config = TrainConfig(algorithm="mofedsam", local_epochs=2, batch_size=4, num_clients=10, clients_per_round=2)
    ctx = ServerContext(round=3, lr=0.5, clients=(1, 6), config=config)
    params, state = load_method(config).server_step(w, updates, {"direction": as_state(DIRECTION)}, ctx)

    mean = [(4 * a + 8 * b) / 12 for a, b in zip(d1, d2)]
    steps = 2 * (12 / 2) / 4  # local_epochs * mean client size / batch size = 3
    assert as_flat(params) == pytest.approx([a + m for a, m in zip(flat(W0, B0), mean)], rel=1e-12)
    assert as_flat(state["direction"]) == pytest.approx([-m / (steps * 0.5) for m in mean], rel=1e-12)
    assert set(state) == {"direction"}


@pytest.mark.parametrize("args, match", [({"alpha": 1.5}, r"alpha .* must be in \[0, 1\]"),
                                         ({"max_grad_norm": -1}, "max_grad_norm .* must be >= 0")])
def test_settings_out_of_range_are_refused(args, match):
    with pytest.raises(ConfigError, match=match):
        MoFedSAM.from_args(args)
