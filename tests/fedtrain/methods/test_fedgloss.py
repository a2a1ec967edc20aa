"""FedGloSS, one client step and one server step against the update rule computed by hand (pietrocagnasso/fedgloss)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fedtrain.client import ClientUpdate
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.methods import ServerContext, load_method
from fedtrain.methods.fedgloss import FedGloSS, warmup_rho
from tests.fedtrain.methods._tiny import B0, W0, as_flat, as_state, ce_gradient, context, flat, global_params, shard, unflat

LR, RHO_L, WD = 0.5, 0.05, 0.01
SERVER_RHO, BETA = 0.2, 2.0
PSEUDO_GRAD = [0.5, 0.1, -0.2, 0.3, 0.0, -0.1]  # -mean delta of the previous round
DUAL = [0.01, 0.02, -0.03, 0.0, 0.05, -0.02]    # the client's h_i


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(a * a for a in v))


def _expected(pseudo_grad: list[float] | None, dual: list[float], steps: int) -> tuple[list[float], list[float]]:
    """By hand: start from w + rho_s g~/||g~||; each step w <- w - lr (g(w + rho_l g/||g||) - h + (w - start)/beta + wd w).

    Returns:
        The delta (w_K - start) and the new dual h - delta / beta.
    """
    start = flat(W0, B0)
    if pseudo_grad is not None:
        start = [a + SERVER_RHO * v / _norm(pseudo_grad) for a, v in zip(start, pseudo_grad)]
    w = start
    for _ in range(steps):
        g = flat(*ce_gradient(*unflat(w)))
        ascended = [a + RHO_L * v / (_norm(g) + 1e-16) for a, v in zip(w, g)]
        g = flat(*ce_gradient(*unflat(ascended)))
        g = [v - h + (a - s) / BETA for v, h, a, s in zip(g, dual, w, start)]
        w = [a - LR * (v + WD * a) for a, v in zip(w, g)]
    delta = [a - s for a, s in zip(w, start)]
    return delta, [h - d / BETA for h, d in zip(dual, delta)]


@pytest.mark.parametrize("pseudo_grad, dual, steps", [
    (None, None, 1),                 # round 0: no server perturbation, a new client (zero dual): FedSAM's step
    (PSEUDO_GRAD, DUAL, 1),          # the perturbed start and the dual
    (PSEUDO_GRAD, DUAL, 2),          # the proximal term (w - start) / beta is active from the second step
])
def test_one_client_step_is_local_sam_with_the_admm_terms_from_the_perturbed_global_model(pseudo_grad, dual, steps):
    method = FedGloSS.from_args({"server_rho": SERVER_RHO, "beta": BETA})
    server_state = {} if pseudo_grad is None else {"pseudo_grad": as_state(pseudo_grad)}
    ctx = context(lr=LR, rho=RHO_L, weight_decay=WD, server_state=server_state)
    ctx = dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, local_epochs=steps))
    before = global_params()
    update, state = method.client_update(before, shard(), {} if dual is None else {"dual": as_state(dual)}, ctx)

    delta, new_dual = _expected(pseudo_grad, dual or [0.0] * 6, steps)
    assert as_flat(update.delta) == pytest.approx(delta, rel=1e-12, abs=1e-15)
    assert as_flat(state["dual"]) == pytest.approx(new_dual, rel=1e-12, abs=1e-15)
    assert set(state) == {"dual"} and update.metrics["steps"] == steps
    assert all(torch.equal(before[k], global_params()[k]) for k in before)  # the global weights are not modified


def test_the_hand_computed_cases_differ_without_the_perturbation_the_dual_or_the_proximal_term():
    delta, _ = _expected(PSEUDO_GRAD, DUAL, 2)
    assert delta != pytest.approx(_expected(None, DUAL, 2)[0], rel=1e-6)
    assert delta != pytest.approx(_expected(PSEUDO_GRAD, [0.0] * 6, 2)[0], rel=1e-6)
    assert _expected(PSEUDO_GRAD, DUAL, 1)[0] != pytest.approx(delta, rel=1e-6)


def test_one_server_step_updates_the_dual_steps_from_the_unperturbed_model_and_keeps_the_pseudo_gradient():
    w = global_params()
    d1, d2 = [0.1, 0.2, -0.3, 0.4, 0.0, -0.6], [0.7, -0.2, 0.1, 0.0, 0.3, 0.2]
    sigma0 = [0.02, -0.01, 0.0, 0.03, -0.02, 0.01]
    names = as_state(d1)  # the clients' duals name the trainable weights
    updates = [ClientUpdate(delta=as_state(d1), num_examples=1, client_state={"dual": names}),
               ClientUpdate(delta=as_state(d2), num_examples=3, client_state={"dual": names})]
    config = TrainConfig(algorithm="fedgloss", num_clients=10, clients_per_round=2, method_args={"beta": BETA})
    ctx = ServerContext(round=3, lr=0.5, clients=(1, 6), config=config)
    params, state = load_method(config).server_step(w, updates, {"sigma": as_state(sigma0), "pseudo_grad": as_state(d2)}, ctx)

    sigma = [s - (a + b) / (BETA * 10 * 2) for s, a, b in zip(sigma0, d1, d2)]  # unweighted sum / (beta N |S|)
    mean = [(1 * a + 3 * b) / 4 for a, b in zip(d1, d2)]                         # sample-weighted, as FedAvg
    assert as_flat(state["sigma"]) == pytest.approx(sigma, rel=1e-12)
    assert as_flat(params) == pytest.approx([w0 + m - BETA * s for w0, m, s in zip(flat(W0, B0), mean, sigma)], rel=1e-12)
    assert as_flat(state["pseudo_grad"]) == pytest.approx([-m for m in mean], rel=1e-12)
    assert set(state) == {"sigma", "pseudo_grad"}


def test_the_first_server_step_starts_the_dual_at_zero():
    d = [0.1, 0.2, -0.3, 0.4, 0.0, -0.6]
    updates = [ClientUpdate(delta=as_state(d), num_examples=2, client_state={"dual": as_state(d)})]
    config = TrainConfig(algorithm="fedgloss", num_clients=4, clients_per_round=1, method_args={"beta": BETA})
    params, state = load_method(config).server_step(global_params(), updates, {}, ServerContext(0, 0.5, (2,), config))
    sigma = [-v / (BETA * 4) for v in d]
    assert as_flat(state["sigma"]) == pytest.approx(sigma, rel=1e-12)
    assert as_flat(params) == pytest.approx([w + v - BETA * s for w, v, s in zip(flat(W0, B0), d, sigma)], rel=1e-12)


def test_the_warmup_ramps_linearly_from_rho0_over_the_warmup_rounds_then_stays():
    assert [warmup_rho(t, 0.15, rho0=0.05, warmup_rounds=4) for t in (0, 1, 2, 4, 9)] == pytest.approx([0.05, 0.075, 0.1, 0.15, 0.15])
    assert warmup_rho(0, 0.15, rho0=0.05, warmup_rounds=0) == warmup_rho(0, 0.15, rho0=0.05, warmup_rounds=1) == 0.15  # --T-s <= 1: none


def test_the_warmup_scales_both_radii():
    """Round 1 of a 4-round warm-up from 0.001: both radii are a quarter of the way, as the hand-computed step with those radii."""
    method = FedGloSS.from_args({"server_rho": SERVER_RHO, "beta": BETA, "warmup_rounds": 4, "rho0": 0.001})
    ctx = dataclasses.replace(context(lr=LR, rho=RHO_L, weight_decay=WD, server_state={"pseudo_grad": as_state(PSEUDO_GRAD)}), round=1)
    update, _ = method.client_update(global_params(), shard(), {"dual": as_state(DUAL)}, ctx)
    ramped = FedGloSS.from_args({"server_rho": 0.001 + (SERVER_RHO - 0.001) / 4, "beta": BETA})
    ctx_ramped = dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, rho=0.001 + (RHO_L - 0.001) / 4), round=0)
    expected, _ = ramped.client_update(global_params(), shard(), {"dual": as_state(DUAL)}, ctx_ramped)
    assert as_flat(update.delta) == pytest.approx(as_flat(expected.delta), rel=1e-12)


@pytest.mark.parametrize("args, match", [
    ({"beta": "0"}, "beta.*> 0"),
    ({"server_rho": "-0.1"}, "server_rho.*>= 0"),
    ({"warmup_rounds": "-2"}, "warmup_rounds.*>= 0"),
    ({"gamma": "1"}, "no setting.*gamma"),
])
def test_bad_settings_are_refused_with_the_setting_named(args, match):
    with pytest.raises(ConfigError, match=match):
        FedGloSS.from_args(args)
