"""Lanczos top-k eigenpairs: exact to 1e-6 at tight tolerance on every device, right multiplicities, no ghost copies,
honest flags, the same random draws everywhere."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from landscape.hessian.exact import dense_hessian
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.lanczos import flatness_ratio, top_eigenpairs
from tests.landscape.hessian.cases import MODEL_CASES, MODEL_IDS, QUADRATIC_IDS, QUADRATIC_SPECTRA, symmetric_with_spectrum, single_threaded  # noqa: F401 (autouse fixture)


def _check_pairs(pairs, matrix, expected, k, tol):
    pairs = dataclasses.replace(pairs, vectors=pairs.vectors.cpu())  # the oracle is on the CPU
    relative = ((pairs.values - expected[:k]).abs() / expected[:k].abs()).max()
    assert relative <= 1e-6, (pairs.values, expected[:k])
    assert pairs.values.shape == (k,) and torch.all(pairs.values[:-1] >= pairs.values[1:])  # descending
    gram = pairs.vectors.T @ pairs.vectors
    torch.testing.assert_close(gram, torch.eye(k, dtype=torch.float64), atol=1e-8, rtol=0)  # no two copies of one vector
    true_residuals = (matrix @ pairs.vectors - pairs.vectors * pairs.values).norm(dim=0)
    torch.testing.assert_close(pairs.residuals, true_residuals, atol=1e-9, rtol=1e-6)
    assert all(pairs.converged) and torch.all(true_residuals <= tol * pairs.values.abs() * 1.0001)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("spectrum", QUADRATIC_IDS)
def test_top_k_of_quadratics_with_outliers_repeats_and_clusters(spectrum, k, device):
    matrix, expected = symmetric_with_spectrum(QUADRATIC_SPECTRA[spectrum])
    pairs = top_eigenpairs(matrix.to(device), k, tol=1e-9, generator=torch.Generator().manual_seed(0))
    assert pairs.vectors.device.type == device.type and pairs.values.device.type == "cpu"
    _check_pairs(pairs, matrix, expected, k, 1e-9)
    assert pairs.verified


def test_a_triple_top_eigenvalue_is_found_three_times_and_not_four():
    matrix, expected = symmetric_with_spectrum(QUADRATIC_SPECTRA["repeated-top"], seed=5)
    pairs = top_eigenpairs(matrix, 4, tol=1e-9)
    torch.testing.assert_close(pairs.values, torch.tensor([5.0, 5.0, 5.0, 3.0], dtype=torch.float64), rtol=1e-9, atol=0)


@pytest.mark.parametrize("max_basis", [20, 60, 100])
def test_no_ghost_copies_however_long_the_krylov_basis(max_basis):
    # a long basis on a matrix whose top pair converges in a few steps: without full reorthogonalisation
    # the converged Ritz value reappears (the eigenthings failure); here every pair is distinct
    matrix, expected = symmetric_with_spectrum([100.0, 50.0, 20.0, 10.0] + [0.01 * i for i in range(96)])
    pairs = top_eigenpairs(matrix, 6, tol=1e-10, max_basis=max_basis, max_matvecs=2000)
    _check_pairs(pairs, matrix, expected, 6, 1e-10)


@pytest.mark.parametrize("case", MODEL_CASES, ids=MODEL_IDS)
def test_top_k_of_model_hessians_match_the_dense_oracle(case, device):
    operator = case.operator(device=device)
    exact = dense_hessian(case.model(), cross_entropy, case.batches())
    expected = torch.linalg.eigvalsh(exact).flip(0)
    pairs = top_eigenpairs(operator, 4, tol=1e-8)
    _check_pairs(pairs, exact, expected, 4, 1e-8)


def test_unconverged_pairs_are_reported_not_hidden():
    matrix, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["tight-cluster"])
    pairs = top_eigenpairs(matrix, 4, tol=1e-12, max_matvecs=6)
    assert pairs.num_matvecs <= 6
    assert not all(pairs.converged) and not pairs.verified
    true_residuals = (matrix @ pairs.vectors - pairs.vectors * pairs.values).norm(dim=0)
    for converged, residual, value in zip(pairs.converged, true_residuals, pairs.values):
        assert converged == bool(residual <= 1e-12 * abs(value) * 1.0001)


def test_every_device_draws_the_same_start_vectors_and_takes_the_same_steps(device):
    matrix, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    on_cpu = top_eigenpairs(matrix, 5, tol=1e-8, generator=torch.Generator().manual_seed(3))
    on_device = top_eigenpairs(matrix.to(device), 5, tol=1e-8, generator=torch.Generator().manual_seed(3))
    assert on_device.num_matvecs == on_cpu.num_matvecs and on_device.converged == on_cpu.converged
    torch.testing.assert_close(on_device.values, on_cpu.values, rtol=1e-10, atol=0)
    alignment = (on_device.vectors.cpu() * on_cpu.vectors).sum(dim=0).abs()  # up to sign: rounding may flip one
    torch.testing.assert_close(alignment, torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-9)


def test_same_seed_same_result_and_ratio():
    matrix, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    first = top_eigenpairs(matrix, 5, generator=torch.Generator().manual_seed(3))
    second = top_eigenpairs(matrix, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.values, second.values) and first.num_matvecs == second.num_matvecs
    assert first.ratio == pytest.approx(9.0 / 2.5, rel=1e-3)


def test_small_operators_are_solved_completely():
    matrix, expected = symmetric_with_spectrum([3.0, 3.0, 1.0, -2.0])
    pairs = top_eigenpairs(matrix, 4, tol=1e-10)
    torch.testing.assert_close(pairs.values, expected, rtol=1e-10, atol=1e-10)


def test_bad_arguments_are_refused():
    matrix, _ = symmetric_with_spectrum([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="k must be between 1 and the operator dimension 3"):
        top_eigenpairs(matrix, 4)
    with pytest.raises(ValueError, match="tol must be > 0"):
        top_eigenpairs(matrix, 1, tol=0)
    with pytest.raises(ValueError, match="max_matvecs must be at least k=2"):
        top_eigenpairs(matrix, 2, max_matvecs=1)


def test_one_flatness_ratio_for_eigenpairs_and_reports():
    from landscape.hessian.analysis import HessianReport

    matrix, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    pairs = top_eigenpairs(matrix, 5, generator=torch.Generator().manual_seed(3))
    report = HessianReport(eigenvalues=pairs.values.tolist(), residuals=[], converged=[], trace=None, density=None,
                           hvps={}, seconds={}, config={})
    assert pairs.ratio == report.ratio == float(pairs.values[0] / pairs.values[-1])
    assert flatness_ratio([3.0, 0.0]) is None and flatness_ratio([]) is None and flatness_ratio([2.0, -4.0]) == -0.5
