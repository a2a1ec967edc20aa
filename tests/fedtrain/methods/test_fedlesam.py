"""FedLESAM, one client step and one server step against the update rule computed by hand (MediaBrain-SJTU/FedLESAM)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fedtrain.client import ClientUpdate, client_update
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.methods import ServerContext, load_method
from fedtrain.methods.fedlesam import FedLESAM, lesam_epsilon
from tests.fedtrain.methods._tiny import (
    B0, W0, as_flat, as_state, ce_gradient, clip, context, flat, global_params, shard, unflat,
)

LR, RHO, WD = 0.5, 0.05, 0.01
UPDATE = [0.2, -0.1, 0.05, 0.3, -0.4, 0.1]  # w_t - w_{t-1}, as the server sends it


def _context(server_state: dict, *, local_epochs: int = 1):
    """The tiny client with FedLESAM's local optimiser (plain SGD: its perturbation is not SAM's gradient step)."""
    ctx = context(lr=LR, rho=RHO, weight_decay=WD, server_state=server_state)
    return dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, optimizer="sgd", local_epochs=local_epochs))


def _expected_delta(update: list[float], steps: int, max_norm: float = 0.0) -> list[float]:
    """``steps`` times w <- w - lr (clip(g(w + eps)) + wd w) with eps = -rho D / ||D|| (the paper's rule, by hand)."""
    norm = math.sqrt(sum(v * v for v in update)) + 1e-16
    eps = [-RHO * v / norm for v in update]
    w = flat(W0, B0)
    for _ in range(steps):
        g = flat(*ce_gradient(*unflat([a + e for a, e in zip(w, eps)])))
        if max_norm > 0:
            g = clip(g, max_norm)
        w = [a - LR * (v + WD * a) for a, v in zip(w, g)]
    return [a - b for a, b in zip(w, flat(W0, B0))]


@pytest.mark.parametrize("steps, max_norm", [
    (1, 0.0),    # one step
    (2, 0.0),    # two steps (two local epochs of the one batch): the same eps, the weight decay at w, not w + eps
    (1, 0.05),   # FL-Simulator's clipping, active (the gradient's norm is ~0.28)
])
def test_one_client_step_descends_with_the_gradient_at_w_minus_rho_times_the_normalised_global_update(steps, max_norm):
    method = FedLESAM.from_args({"max_grad_norm": max_norm})
    before = global_params()
    update, state = method.client_update(before, shard(), {}, _context({"global_update": as_state(UPDATE)}, local_epochs=steps))
    assert as_flat(update.delta) == pytest.approx(_expected_delta(UPDATE, steps, max_norm), rel=1e-12, abs=1e-15)
    assert state == {} and update.num_examples == 3 and update.metrics["steps"] == steps
    assert all(torch.equal(before[k], global_params()[k]) for k in before)  # the global weights are not modified


def test_the_hand_computed_cases_differ_from_sgd_from_the_opposite_perturbation_and_from_unclipped():
    sgd = _expected_delta([0.0] * 6, 1)
    assert _expected_delta(UPDATE, 1) != pytest.approx(sgd, rel=1e-6)
    assert _expected_delta(UPDATE, 1) != pytest.approx(_expected_delta([-v for v in UPDATE], 1), rel=1e-6)
    assert _expected_delta(UPDATE, 1, 0.05) != pytest.approx(_expected_delta(UPDATE, 1), rel=1e-6)


def test_round_zero_without_a_global_update_is_local_sgd_bit_for_bit():
    ctx = _context({})
    update, _ = FedLESAM().client_update(global_params(), shard(), {}, ctx)
    sgd = client_update(ctx.worker, global_params(), shard(), ctx.config, torch.Generator().manual_seed(0))
    assert all(torch.equal(update.delta[k], sgd.delta[k]) for k in sgd.delta)  # the gradient's norm is far below 10


def test_one_forward_and_one_backward_pass_a_step():
    ctx = _context({"global_update": as_state(UPDATE)}, local_epochs=3)
    forwards = []
    ctx.worker.register_forward_hook(lambda *_: forwards.append(1))
    update, _ = FedLESAM().client_update(global_params(), shard(), {}, ctx)
    assert update.metrics["steps"] == 3 and len(forwards) == 3  # SAM takes 6


def test_lesam_epsilon_is_minus_rho_times_the_unit_update():
    eps = lesam_epsilon([torch.tensor([3.0, 0.0]), torch.tensor([4.0])], 0.5)
    assert torch.equal(eps[0], torch.tensor([-0.3, 0.0])) and torch.allclose(eps[1], torch.tensor([-0.4]))
    assert all(torch.equal(e, torch.zeros(2)) for e in lesam_epsilon([torch.zeros(2)], 0.5))  # no update: no perturbation


def test_one_server_step_is_fedavg_and_keeps_the_global_model_difference():
    w = global_params()
    d1, d2 = [0.1, 0.2, -0.3, 0.4, 0.0, -0.6], [0.7, -0.2, 0.1, 0.0, 0.3, 0.2]
    updates = [ClientUpdate(delta=as_state(d1), num_examples=4), ClientUpdate(delta=as_state(d2), num_examples=8)]
    for server_lr, momentum in ((1.0, 0.0), (0.5, 0.9)):
        config = TrainConfig(algorithm="fedlesam", num_clients=10, clients_per_round=2, server_lr=server_lr, server_momentum=momentum)
        ctx = ServerContext(round=3, lr=0.5, clients=(1, 6), config=config)
        previous = {"global_update": as_state(UPDATE)}
        if momentum:
            previous["server_momentum"] = as_state([0.01] * 6)
        params, state = load_method(config).server_step(w, updates, previous, ctx)

        mean = [(4 * a + 8 * b) / 12 for a, b in zip(d1, d2)]
        # FedOpt with PyTorch's momentum convention: m <- momentum m - mean, w <- w - lr m
        m = [momentum * 0.01 - v for v in mean] if momentum else [-v for v in mean]
        expected = [a - server_lr * v for a, v in zip(flat(W0, B0), m)]
        assert as_flat(params) == pytest.approx(expected, rel=1e-12)
        # the next round's clients perturb with what the global model really moved (the server momentum included)
        assert as_flat(state["global_update"]) == pytest.approx([a - b for a, b in zip(expected, flat(W0, B0))], rel=1e-9)
        assert set(state) == ({"global_update", "server_momentum"} if momentum else {"global_update"})


def test_a_negative_clipping_norm_is_refused_with_the_setting_named():
    with pytest.raises(ConfigError, match="fedlesam.*max_grad_norm.*>= 0"):
        FedLESAM.from_args({"max_grad_norm": "-1"})
