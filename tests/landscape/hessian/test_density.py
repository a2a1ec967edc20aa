"""SLQ density: quadrature weights and moments match the exact spectrum on every device; the smoothed density
integrates to 1."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.hessian.density import default_bandwidth, density_slq, smooth_density
from landscape.hessian.exact import dense_hessian
from landscape.hessian.analysis import cross_entropy
from tests.landscape.hessian.cases import MODEL_CASES, QUADRATIC_SPECTRA, symmetric_with_spectrum, single_threaded  # noqa: F401 (autouse fixture)


def test_weights_are_probability_vectors_and_the_density_integrates_to_one():
    matrix, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    spectrum = density_slq(matrix, num_probes=10, num_steps=30, generator=torch.Generator().manual_seed(0))
    assert spectrum.nodes.shape == spectrum.weights.shape == (10, 30)
    torch.testing.assert_close(spectrum.weights.sum(dim=1), torch.ones(10, dtype=torch.float64))
    assert float(torch.trapezoid(spectrum.values, spectrum.grid)) == pytest.approx(1.0, abs=1e-12)
    assert spectrum.num_matvecs == 300 and spectrum.bandwidth > 0


@pytest.mark.parametrize("power", [1, 2, 3])
def test_moments_match_the_exact_spectrum(power, device):
    matrix, values = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    exact = float((values**power).mean())
    spectrum = density_slq(matrix.to(device), num_probes=20, num_steps=10, generator=torch.Generator().manual_seed(1))
    # each probe's quadrature is exact for degree < 20, so the per-probe moments are Hutchinson samples
    per_probe = (spectrum.weights * spectrum.nodes**power).sum(dim=1)
    stderr = float(per_probe.std() / math.sqrt(len(per_probe)))
    assert abs(spectrum.moment(power) - exact) <= 4 * stderr
    assert spectrum.moment(0) == pytest.approx(1.0)


def test_full_lanczos_recovers_the_exact_eigenvalues_as_nodes(device):
    matrix, values = symmetric_with_spectrum([3.0, 1.0, 0.5, -1.0, -2.0])
    spectrum = density_slq(matrix.to(device), num_probes=2, num_steps=5, generator=torch.Generator().manual_seed(0))
    for row in spectrum.nodes:
        torch.testing.assert_close(row.sort().values, values.sort().values, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("power", [1, 2])
def test_model_hessian_moments_are_the_normalised_traces_of_its_powers(power, device):
    case = MODEL_CASES[1]
    exact = dense_hessian(case.model(), cross_entropy, case.batches())
    spectrum = density_slq(case.operator(device=device), num_probes=10, num_steps=8, generator=torch.Generator().manual_seed(0))
    assert spectrum.nodes.device.type == spectrum.values.device.type == "cpu"  # a few numbers: on the host
    per_probe = (spectrum.weights * spectrum.nodes**power).sum(dim=1)
    stderr = float(per_probe.std() / math.sqrt(len(per_probe)))
    expected = float(torch.trace(torch.linalg.matrix_power(exact, power))) / exact.shape[0]
    assert abs(spectrum.moment(power) - expected) <= 4 * stderr


def test_smoothing_is_a_gaussian_mixture():
    grid, values = smooth_density(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.25, 0.75]]), bandwidth=0.05, grid_size=4001)
    mean = float(torch.trapezoid(values * grid, grid))
    assert mean == pytest.approx(0.75, abs=1e-6)
    peak = values[torch.argmin((grid - 1.0).abs())]
    assert float(peak) == pytest.approx(0.75 / (0.05 * math.sqrt(2 * math.pi)), rel=1e-3)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_probes and num_steps must be >= 1"):
        density_slq(torch.eye(3), num_probes=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        smooth_density(torch.zeros(1, 1), torch.ones(1, 1), bandwidth=0.0)


def test_one_bandwidth_rule_for_slq_and_pyhessian_densities():
    nodes = torch.tensor([[-1.0, 0.5, 3.0]], dtype=torch.float64)
    assert default_bandwidth(nodes) == pytest.approx(4.0 / 200, rel=1e-15)
    assert default_bandwidth(torch.full((2, 3), -5.0)) == pytest.approx(5e-3) and default_bandwidth(torch.zeros(1, 2)) == 1e-3
    matrix, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    spectrum = density_slq(matrix, num_probes=2, num_steps=10, generator=torch.Generator().manual_seed(0))
    assert spectrum.bandwidth == default_bandwidth(spectrum.nodes)
