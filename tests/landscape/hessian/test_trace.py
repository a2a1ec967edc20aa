"""Trace estimators: unbiased within 3 standard errors over seeds on every device; Hutch++ beats Hutchinson on
Hessian-like spectra."""

from __future__ import annotations

import pytest
import torch

from fedtrain.errors import ConfigError

from landscape.hessian.exact import dense_hessian
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.trace import mean_and_stderr, random_probes, trace_hutchinson, trace_hutchpp
from tests.landscape.hessian.cases import MODEL_CASES, QUADRATIC_SPECTRA, symmetric_with_spectrum, single_threaded  # noqa: F401 (autouse fixture)

ESTIMATORS = {"hutchinson": trace_hutchinson, "hutch++": trace_hutchpp}


@pytest.mark.parametrize("method", list(ESTIMATORS))
def test_estimates_are_within_three_standard_errors_of_the_exact_trace_over_seeds(method):
    matrix, values = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    exact = float(values.sum())
    within = 0
    for seed in range(40):
        estimate = ESTIMATORS[method](matrix, 30, generator=torch.Generator().manual_seed(seed))
        assert estimate.method == method and estimate.num_matvecs == 30
        within += abs(estimate.estimate - exact) <= 3 * estimate.stderr
    assert within >= 36  # 3 sigma covers 99.7%; the t-distribution with few samples a little less


def test_hutchpp_is_more_accurate_than_hutchinson_at_equal_budget_on_an_outlier_spectrum():
    matrix, values = symmetric_with_spectrum([50.0, 30.0, 20.0, 10.0] + [0.1] * 96)
    exact = float(values.sum())
    errors = {name: 0.0 for name in ESTIMATORS}
    for seed in range(20):
        for name, estimator in ESTIMATORS.items():
            errors[name] += abs(estimator(matrix, 30, generator=torch.Generator().manual_seed(seed)).estimate - exact)
    assert errors["hutch++"] < 0.25 * errors["hutchinson"]


@pytest.mark.parametrize("method", list(ESTIMATORS))
def test_model_hessian_trace_is_unbiased(method, device):
    case = MODEL_CASES[0]
    exact = float(torch.trace(dense_hessian(case.model(), cross_entropy, case.batches())))
    operator = case.operator(device=device)
    estimate = ESTIMATORS[method](operator, 90, generator=torch.Generator().manual_seed(0))
    assert abs(estimate.estimate - exact) <= 4 * estimate.stderr
    # the probes are drawn on the CPU generator: the same estimate on every device
    on_cpu = ESTIMATORS[method](case.operator(), 90, generator=torch.Generator().manual_seed(0))
    assert estimate.estimate == pytest.approx(on_cpu.estimate, rel=1e-10) and estimate.num_matvecs == on_cpu.num_matvecs


def test_hutchpp_is_exact_on_low_rank_matrices(device):
    matrix, values = symmetric_with_spectrum([4.0, 3.0] + [0.0] * 30)
    estimate = trace_hutchpp(matrix.to(device), 12, generator=torch.Generator().manual_seed(0))
    assert estimate.estimate == pytest.approx(7.0, rel=1e-10)


def test_a_confidence_halfwidth_stops_early_but_never_before_ten_probes():
    matrix, _ = symmetric_with_spectrum([1.0] * 50)  # identity: every Rademacher sample equals 50 exactly
    estimate = trace_hutchinson(matrix, 100, generator=torch.Generator().manual_seed(0), halfwidth=1e-6)
    assert estimate.num_matvecs == 10 and estimate.estimate == pytest.approx(50.0)
    noisy, _ = symmetric_with_spectrum(QUADRATIC_SPECTRA["outliers"])
    assert trace_hutchinson(noisy, 100, generator=torch.Generator().manual_seed(0), halfwidth=1e-6).num_matvecs == 100


def test_probes_and_bad_arguments():
    probes = random_probes(1000, 3, torch.Generator().manual_seed(0))
    assert set(probes.unique().tolist()) == {-1.0, 1.0} and probes.dtype == torch.float64
    with pytest.raises(ValueError, match="distribution must be 'rademacher' or 'normal'"):
        random_probes(3, 1, torch.Generator(), "uniform")
    with pytest.raises(ValueError, match="num_matvecs must be >= 1"):
        trace_hutchinson(torch.eye(2), 0, generator=torch.Generator())
    with pytest.raises(ValueError, match="Hutch\\+\\+ needs num_matvecs >= 3"):
        trace_hutchpp(torch.eye(2), 2, generator=torch.Generator())
    with pytest.raises(ValueError, match="confidence must be in"):
        trace_hutchinson(torch.eye(2), 12, generator=torch.Generator(), halfwidth=0.1, confidence=1.5)


def test_mean_and_stderr_is_the_textbook_formula():
    import statistics

    samples = [1.0, 4.0, 2.5, 7.0, -1.0]
    mean, stderr = mean_and_stderr(samples)
    assert mean == pytest.approx(statistics.fmean(samples), rel=1e-15)
    assert stderr == pytest.approx(statistics.stdev(samples) / len(samples) ** 0.5, rel=1e-14)
    single = mean_and_stderr([3.0])
    assert single[0] == 3.0 and single[1] != single[1]  # nan: no spread from one sample
    with pytest.raises(ConfigError, match="at least one sample"):
        mean_and_stderr([])
