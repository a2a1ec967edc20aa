"""Power iteration with deflation (the PyHessian-style reference): right on separated spectra, honest flags."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from landscape.hessian.power import power_iteration_eigenpairs
from tests.landscape.hessian.cases import symmetric_with_spectrum, single_threaded  # noqa: F401 (autouse fixture)


def test_finds_well_separated_top_eigenpairs_with_the_residual_rule(device):
    matrix, expected = symmetric_with_spectrum([10.0, 5.0, 2.0] + [0.01 * i for i in range(40)])
    pairs = power_iteration_eigenpairs(matrix.to(device), 3, tol=1e-7, stop="residual", max_matvecs=3000)
    pairs = dataclasses.replace(pairs, vectors=pairs.vectors.cpu())
    torch.testing.assert_close(pairs.values, expected[:3], rtol=1e-9, atol=0)
    assert pairs.converged[0] and pairs.method == "power"
    true_residuals = (matrix @ pairs.vectors - pairs.vectors * pairs.values).norm(dim=0)
    torch.testing.assert_close(pairs.residuals, true_residuals, rtol=1e-6, atol=1e-9)
    # deflating by an approximate eigenvector leaves a residual floor on later pairs; the flag says so
    assert pairs.converged == [bool(r <= 1e-7 * abs(v)) for r, v in zip(true_residuals, pairs.values)]


def test_rayleigh_rule_stops_early_and_the_flag_says_so():
    # close eigenvalues: the Rayleigh quotient barely moves long before the vector converges
    matrix, expected = symmetric_with_spectrum([1.0, 0.99] + [0.5] * 30)
    pairs = power_iteration_eigenpairs(matrix, 1, tol=1e-3, stop="rayleigh")
    assert pairs.num_matvecs < 50
    assert pairs.converged == [bool(pairs.residuals[0] <= 1e-3 * abs(pairs.values[0]))]


def test_power_iteration_targets_largest_magnitude():
    matrix, _ = symmetric_with_spectrum([2.0, 1.0, -8.0, 0.1])
    pairs = power_iteration_eigenpairs(matrix, 1, tol=1e-10, stop="residual")
    assert pairs.values[0] == pytest.approx(-8.0, rel=1e-8)


def test_bad_arguments_are_refused():
    matrix, _ = symmetric_with_spectrum([1.0, 2.0])
    with pytest.raises(ValueError, match="k must be between 1"):
        power_iteration_eigenpairs(matrix, 3)
    with pytest.raises(ValueError, match="stop must be 'rayleigh' or 'residual'"):
        power_iteration_eigenpairs(matrix, 1, stop="change")
