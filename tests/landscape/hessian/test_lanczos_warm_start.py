"""Lanczos started from a given vector: the same top eigenvalue as a random start, in fewer products when the
vector is close to the top eigenvector (the warm start of sharpness tracking); bad start vectors are refused."""

from __future__ import annotations

import pytest
import torch

from fedtrain.errors import ConfigError
from landscape.hessian.lanczos import top_eigenpairs
from tests.landscape.hessian.cases import QUADRATIC_SPECTRA, symmetric_with_spectrum, single_threaded  # noqa: F401


@pytest.mark.parametrize("spectrum", ["outliers", "tight-cluster"])
def test_a_warm_start_near_the_top_eigenvector_reaches_the_same_lambda_max_in_fewer_products_when_it_is_separated(spectrum):
    matrix, expected = symmetric_with_spectrum(QUADRATIC_SPECTRA[spectrum])
    # the previous check's model: the same matrix slightly moved, as after a few training rounds
    noise = torch.randn(matrix.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    earlier = matrix + 0.05 * (noise + noise.T)
    previous = torch.linalg.eigh(earlier).eigenvectors[:, -1]
    cold = top_eigenpairs(matrix, 1, tol=1e-6, generator=torch.Generator().manual_seed(0))
    warm = top_eigenpairs(matrix, 1, tol=1e-6, generator=torch.Generator().manual_seed(0), v0=previous)
    assert cold.converged == warm.converged == [True]
    assert float(warm.values[0]) == pytest.approx(float(expected[0]), rel=1e-6)
    assert float(cold.values[0]) == pytest.approx(float(expected[0]), rel=1e-6)
    if spectrum == "outliers":
        assert warm.num_matvecs < cold.num_matvecs
    # in a cluster with gaps of 1e-5 the previous top eigenvector is any mix of the cluster's: no saving promised


def test_without_v0_the_draws_are_those_of_before():
    matrix, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    a = top_eigenpairs(matrix, 2, tol=1e-6, generator=torch.Generator().manual_seed(4))
    b = top_eigenpairs(matrix, 2, tol=1e-6, generator=torch.Generator().manual_seed(4), v0=None)
    assert torch.equal(a.values, b.values) and a.num_matvecs == b.num_matvecs


@pytest.mark.parametrize("v0, match", [(torch.zeros(120, dtype=torch.float64), "finite non-zero"),
                                       (torch.ones(7, dtype=torch.float64), r"shape \(120,\)"),
                                       (torch.full((120,), float("nan"), dtype=torch.float64), "finite non-zero")])
def test_a_start_vector_that_cannot_start_a_krylov_space_is_refused(v0, match):
    matrix, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    with pytest.raises(ConfigError, match=match):
        top_eigenpairs(matrix, 1, v0=v0)


def test_without_verification_the_top_pair_is_the_same_in_fewer_products_and_says_unverified():
    matrix, expected = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    checked = top_eigenpairs(matrix, 1, tol=1e-6)
    quick = top_eigenpairs(matrix, 1, tol=1e-6, verify=False)
    assert float(quick.values[0]) == pytest.approx(float(expected[0]), rel=1e-6) and quick.converged == [True]
    assert quick.num_matvecs < checked.num_matvecs and checked.verified and not quick.verified
