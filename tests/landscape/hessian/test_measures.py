"""Flatness measures against exact answers: quadratics (worst- and average-case in closed form), the rescaling
invariance of adaptive sharpness, and the report of every measure on a small model."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from fedtrain.errors import ConfigError
from fedtrain.sam import asam_epsilon, weight_mask
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.exact import dense_hessian
from landscape.hessian.measures import (
    SCALE_INVARIANT, ModelObjective, QuadraticObjective, adaptive_scale, average_case_sharpness, flatness_measures,
    worst_case_sharpness,
)
from landscape.hessian.operator import HessianOperator
from landscape.settings import MEASURES, MeasureSettings
from tests.landscape.hessian.cases import MODEL_CASES, QUADRATIC_SPECTRA, symmetric_with_spectrum, single_threaded  # noqa: F401


@pytest.mark.parametrize("spectrum", ["outliers", "repeated-top"])
def test_worst_case_sharpness_of_a_quadratic_at_its_minimum_is_half_rho_squared_lambda_max(spectrum):
    matrix, eigenvalues = symmetric_with_spectrum(QUADRATIC_SPECTRA[spectrum])
    rho = 0.3
    estimate = worst_case_sharpness(QuadraticObjective(matrix), torch.zeros(len(matrix), dtype=torch.float64), rho,
                                    steps=100, generator=torch.Generator().manual_seed(1))
    assert estimate.value == pytest.approx(rho**2 * float(eigenvalues[0]) / 2, rel=1e-6)
    assert estimate.value <= rho**2 * float(eigenvalues[0]) / 2 * (1 + 1e-12)  # a lower bound of the maximum, never above
    assert estimate.num_gradients == 101 and estimate.stderr is None


def test_the_ascent_starts_at_asams_step_and_never_leaves_the_ball():
    # one step = the first perturbation only: its loss increase is that of ASAM's epsilon (fedtrain.sam)
    matrix, _ = symmetric_with_spectrum([4.0, 2.0, 1.0, 0.5])
    center = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    objective = QuadraticObjective(matrix)
    scale = center.abs() + 0.1
    estimate = worst_case_sharpness(objective, center, 0.2, steps=1, scale=scale)
    _, g = objective.value_and_grad(center)
    (eps,) = asam_epsilon([center], [g], 0.2, 0.1, [True])
    assert estimate.history[0] == pytest.approx(objective.value(center + eps) - objective.value(center), rel=1e-12)
    long = worst_case_sharpness(objective, center, 0.2, steps=50, scale=scale)
    assert long.value >= estimate.value  # more steps never report less


@pytest.mark.parametrize("at_minimum", [True, False])
def test_average_case_sharpness_of_a_quadratic_is_half_sigma_squared_trace(at_minimum):
    matrix, eigenvalues = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    sigma, n = 0.1, 400
    center = torch.zeros(len(matrix), dtype=torch.float64) if at_minimum else torch.linspace(-1, 1, len(matrix), dtype=torch.float64)
    estimate = average_case_sharpness(QuadraticObjective(matrix), center, sigma, samples=n,
                                      generator=torch.Generator().manual_seed(3))
    expected = sigma**2 * float(eigenvalues.sum()) / 2
    assert abs(estimate.value - expected) <= 4 * estimate.stderr
    assert 0 < estimate.stderr < 0.1 * abs(expected)
    assert estimate.num_losses == 2 * n + 1


def test_antithetic_pairs_cancel_the_gradient_exactly():
    matrix, _ = symmetric_with_spectrum([3.0, 1.0, -0.5, 0.2])
    objective = QuadraticObjective(matrix)
    at_min = average_case_sharpness(objective, torch.zeros(4, dtype=torch.float64), 0.2, samples=10)
    away = average_case_sharpness(objective, torch.tensor([5.0, -3.0, 2.0, 1.0], dtype=torch.float64), 0.2, samples=10)
    assert away.value == pytest.approx(at_min.value, rel=1e-9)


def test_bad_radii_and_budgets_are_refused():
    objective, center = QuadraticObjective(torch.eye(2, dtype=torch.float64)), torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ConfigError, match="rho must be"):
        worst_case_sharpness(objective, center, 0.0)
    with pytest.raises(ConfigError, match="steps must be"):
        worst_case_sharpness(objective, center, 0.1, steps=0)
    with pytest.raises(ConfigError, match="sigma must be"):
        average_case_sharpness(objective, center, -1.0)
    with pytest.raises(ConfigError, match="measures .* must be a comma-separated list"):
        MeasureSettings(measures=("worst", "sharpest"))


class BiasFreeReLU(nn.Module):
    """Linear -> ReLU -> Linear -> ReLU -> Linear without biases: rescaling a layer by c and the next by 1/c keeps the function."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 8, bias=False)
        self.b = nn.Linear(8, 8, bias=False)
        self.c = nn.Linear(8, 3, bias=False)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _relu_case():
    torch.manual_seed(0)
    model = BiasFreeReLU().double()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=generator)
    rescaled = copy.deepcopy(model)
    with torch.no_grad():
        rescaled.a.weight.mul_(4.0)
        rescaled.b.weight.div_(4.0)
    return model, rescaled, [(x[:25], y[:25]), (x[25:], y[25:])]


def test_adaptive_sharpness_with_eta_zero_is_invariant_to_rescaling_layers_and_lambda_max_is_not():
    model, rescaled, batches = _relu_case()
    torch.testing.assert_close(model(batches[0][0]), rescaled(batches[0][0]), rtol=1e-12, atol=1e-12)  # the same function
    settings = MeasureSettings(measures=("lambda-max", "adaptive-worst", "worst"), eta=0.0, adaptive_rho=0.3, rho=0.3,
                               ascent_steps=30, tol=1e-8, max_matvecs=400)
    first = flatness_measures(HessianOperator(model, cross_entropy, batches), settings)["values"]
    second = flatness_measures(HessianOperator(rescaled, cross_entropy, batches), settings)["values"]
    assert first["adaptive_worst"] > 1e-3
    assert second["adaptive_worst"] == pytest.approx(first["adaptive_worst"], rel=1e-6)
    assert abs(second["lambda_max"] / first["lambda_max"] - 1) > 0.5
    assert abs(second["worst"] / first["worst"] - 1) > 0.1
    assert SCALE_INVARIANT["adaptive_worst"] and not SCALE_INVARIANT["lambda_max"] and not SCALE_INVARIANT["worst"]


def test_adaptive_scale_is_asams_operator_on_weights_and_one_on_biases():
    case = MODEL_CASES[0]
    operator = case.operator()
    scale = operator.unflatten(adaptive_scale(operator, 0.2))
    for (name, p), is_weight in zip(operator.params.items(), weight_mask(list(operator.params))):
        expected = p.abs() + 0.2 if is_weight else torch.ones_like(p)
        torch.testing.assert_close(scale[name], expected)


def test_the_model_objective_is_the_mean_loss_and_its_gradient():
    case = MODEL_CASES[1]
    model, batches = case.model(), case.batches()
    objective = ModelObjective(HessianOperator(model, cross_entropy, batches))
    inputs = torch.cat([x for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    loss = cross_entropy(model(inputs), targets)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    value, gradient = objective.value_and_grad(objective.center())
    assert value == pytest.approx(float(loss.detach()), rel=1e-12)
    assert objective.value(objective.center()) == pytest.approx(float(loss.detach()), rel=1e-12)
    torch.testing.assert_close(gradient, torch.cat([g.reshape(-1) for g in grads]), rtol=1e-10, atol=1e-12)


def test_every_measure_on_a_small_model_matches_its_exact_value_seeded_and_leaves_the_model_alone():
    case = MODEL_CASES[0]
    model, batches = case.model(), case.batches()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = MeasureSettings(tol=1e-8, max_matvecs=500, average_samples=8, ascent_steps=5)
    result = flatness_measures(HessianOperator(model, cross_entropy, batches), settings, seed=2)
    again = flatness_measures(HessianOperator(model, cross_entropy, batches), settings, seed=2)
    assert result["values"] == again["values"]  # seeded: bit-identical
    hessian = dense_hessian(model, cross_entropy, batches)
    values = result["values"]
    assert values["lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(hessian)[-1]), rel=1e-8)
    norm2 = sum(float((p.double() ** 2).sum()) for p in model.parameters())
    assert values["lambda_max_x_weight_norm2"] == pytest.approx(values["lambda_max"] * norm2, rel=1e-12)
    assert abs(values["trace"] - float(hessian.trace())) <= 4 * result["stderr"]["trace"] + 1e-9
    assert set(values) == set(SCALE_INVARIANT) and set(result["seconds"]) == set(MEASURES)
    assert values["worst"] > 0 and values["adaptive_worst"] > 0 and result["stderr"]["average"] > 0
    assert all(result["converged"].values())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert math.isclose(result["weight_norm"] ** 2, norm2, rel_tol=1e-12)
