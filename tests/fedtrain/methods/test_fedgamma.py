"""FedGAMMA, one client step and one server step against the update rule computed by hand (FL-Simulator's FedGamma, SCAFFOLD option II)."""

from __future__ import annotations

import pytest
import torch

from fedtrain.client import ClientUpdate
from fedtrain.config import TrainConfig
from fedtrain.methods import ServerContext, load_method
from fedtrain.methods.fedgamma import FedGAMMA
from tests.fedtrain.methods._tiny import B0, W0, as_flat, as_state, clip, context, flat, global_params, sam_gradient, shard

LR, RHO, WD = 0.5, 0.05, 0.01
C = [0.02, -0.05, 0.1, 0.0, 0.03, -0.01]     # the server's control variate
C_I = [-0.04, 0.01, 0.0, 0.06, -0.02, 0.05]  # the client's


@pytest.mark.parametrize("max_norm", [0.0, 0.05])
def test_one_client_step_is_sam_plus_the_control_variate_correction_and_c_i_follows_option_two(max_norm):
    method = FedGAMMA.from_args({"max_grad_norm": max_norm})
    ctx = context(lr=LR, rho=RHO, weight_decay=WD, server_state={"c": as_state(C)})
    update, state = method.client_update(global_params(), shard(), {"c": as_state(C_I)}, ctx)

    g = [s + c - ci for s, c, ci in zip(sam_gradient(RHO), C, C_I)]
    g = clip(g, max_norm) if max_norm > 0 else g
    delta = [-LR * (v + WD * w) for v, w in zip(g, flat(W0, B0))]
    steps = 1 * 3 / 3  # local_epochs * n_i / batch size
    new_c_i = [ci - c - d / steps / LR for ci, c, d in zip(C_I, C, delta)]
    assert as_flat(update.delta) == pytest.approx(delta, rel=1e-12, abs=1e-15)
    assert as_flat(state["c"]) == pytest.approx(new_c_i, rel=1e-12, abs=1e-15)
    assert as_flat(update.extras["delta_c"]) == pytest.approx([n - ci for n, ci in zip(new_c_i, C_I)], rel=1e-12, abs=1e-15)


def test_a_client_sampled_for_the_first_time_starts_from_zero_control_variates():
    update, state = FedGAMMA.from_args({"max_grad_norm": 0.0}).client_update(
        global_params(), shard(), {}, context(lr=LR, rho=RHO, weight_decay=WD, server_state={}))
    delta = [-LR * (v + WD * w) for v, w in zip(sam_gradient(RHO), flat(W0, B0))]  # plain local SAM
    assert as_flat(update.delta) == pytest.approx(delta, rel=1e-12, abs=1e-15)
    assert as_flat(state["c"]) == pytest.approx([-d / LR for d in delta], rel=1e-12)


def test_one_server_step_is_fedavg_and_c_moves_by_the_clients_changes_over_all_clients():
    d1, d2 = [0.1, 0.2, -0.3, 0.4, 0.0, -0.6], [0.7, -0.2, 0.1, 0.0, 0.3, 0.2]
    dc1, dc2 = [0.5, -0.5, 1.0, 0.0, 0.2, 0.1], [1.5, 0.5, -1.0, 2.0, 0.0, 0.3]
    updates = [ClientUpdate(delta=as_state(d1), num_examples=3, extras={"delta_c": as_state(dc1)}),
               ClientUpdate(delta=as_state(d2), num_examples=1, extras={"delta_c": as_state(dc2)})]
    config = TrainConfig(algorithm="fedgamma", num_clients=20, clients_per_round=2)
    ctx = ServerContext(round=0, lr=LR, clients=(2, 9), config=config)
    params, state = load_method(config).server_step(global_params(), updates, {"c": as_state(C)}, ctx)

    assert as_flat(params) == pytest.approx([w + (3 * a + b) / 4 for w, a, b in zip(flat(W0, B0), d1, d2)], rel=1e-12)
    assert as_flat(state["c"]) == pytest.approx([c + (a + b) / 20 for c, a, b in zip(C, dc1, dc2)], rel=1e-12)


def test_the_server_step_leaves_its_inputs_untouched():
    c = as_state(C)
    updates = [ClientUpdate(delta=as_state(C_I), num_examples=2, extras={"delta_c": as_state(C_I)})]
    config = TrainConfig(algorithm="fedgamma", num_clients=4, clients_per_round=1)
    load_method(config).server_step(global_params(), updates, {"c": c}, ServerContext(0, LR, (0,), config))
    assert torch.equal(c["1.weight"], as_state(C)["1.weight"])
