"""Stochastic trace estimators, Hutchinson and Hutch++, with standard errors and principled stopping.

Both stop on a budget of products, or earlier on a confidence half-width of the estimate, never on
the change of a running mean (the rule that lets PyHessian stop after two samples). The module also
owns the random probes and :func:`mean_and_stderr`, the standard error of every trace estimate
(the PyHessian adapter's included).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from fedtrain.errors import ConfigError
from landscape.hessian.operator import LinearOperator, as_operator

__all__ = ["TraceEstimate", "trace_hutchinson", "trace_hutchpp", "random_probes", "mean_and_stderr"]

# Samples needed before a standard error is trusted for the half-width stopping rule.
_MIN_SAMPLES = 10


@dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate.

    Attributes:
        estimate: the trace estimate.
        stderr: its standard error (``nan`` with fewer than two random samples).
        num_matvecs: operator products used.
        method: ``"hutchinson"`` or ``"hutch++"``.
    """

    estimate: float
    stderr: float
    num_matvecs: int
    method: str

    def to_dict(self) -> dict[str, object]:
        return {"estimate": self.estimate, "stderr": self.stderr, "method": self.method, "num_matvecs": self.num_matvecs}


def random_probes(dim: int, count: int, generator: torch.Generator, distribution: str = "rademacher",
                  *, device: torch.device | None = None) -> Tensor:
    """``(dim, count)`` float64 probes with ``E[v v^T] = I``: Rademacher (+-1) or standard normal, on ``device``.

    The draw is made on ``generator`` (a CPU generator) and then moved (default: stays on the CPU),
    so every device gets the same probes.

    Raises:
        ConfigError: unknown distribution.
    """
    if distribution == "rademacher":
        return (torch.randint(0, 2, (dim, count), generator=generator).to(torch.float64) * 2 - 1).to(device)
    if distribution == "normal":
        return torch.randn(dim, count, generator=generator, dtype=torch.float64).to(device)
    raise ConfigError(f"distribution must be 'rademacher' or 'normal', got {distribution!r}.")


def _sample_mean(op: LinearOperator, num_samples: int, generator: torch.Generator, distribution: str,
                 halfwidth: float | None, confidence: float, basis: Tensor | None) -> tuple[float, float, int]:
    """Mean and standard error of ``g^T H g`` over probes (projected off ``basis`` when given)."""
    z = _z_score(confidence)
    samples: list[float] = []
    for _ in range(num_samples):
        probe = random_probes(op.dim, 1, generator, distribution, device=op.device)[:, 0]
        if basis is not None:
            probe = probe - basis @ (basis.T @ probe)
        samples.append(float(probe @ op.matvec(probe)))
        if halfwidth is not None and len(samples) >= _MIN_SAMPLES and z * mean_and_stderr(samples)[1] <= halfwidth:
            break
    mean, stderr = mean_and_stderr(samples)
    return mean, stderr, len(samples)


def trace_hutchinson(
    operator: LinearOperator | Tensor,
    num_matvecs: int,
    *,
    generator: torch.Generator,
    distribution: Literal["rademacher", "normal"] = "rademacher",
    halfwidth: float | None = None,
    confidence: float = 0.95,
) -> TraceEstimate:
    """Hutchinson's estimator (Hutchinson 1989): the mean of ``v^T H v`` over random probes.

    .. math:: \\operatorname{tr}(H) \\approx \\frac1m \\sum_{i=1}^m v_i^\\top H v_i, \\quad \\mathbb E[v v^\\top] = I

    Args:
        operator: a :class:`~landscape.hessian.operator.LinearOperator` or a dense ``Tensor``.
        num_matvecs: budget of products (= probes).
        generator: source of the probes.
        distribution: ``"rademacher"`` (lower variance) or ``"normal"``.
        halfwidth: stop earlier once the ``confidence`` interval half-width ``z * stderr`` is below
            this (checked from the 10th probe on).
        confidence: level of that interval.

    Returns:
        :class:`TraceEstimate`.

    Raises:
        ConfigError: a budget below 1, or ``confidence`` outside ``(0, 1)``.
    """
    if num_matvecs < 1:
        raise ConfigError(f"num_matvecs must be >= 1, got {num_matvecs}.")
    op = as_operator(operator)
    mean, stderr, used = _sample_mean(op, num_matvecs, generator, distribution, halfwidth, confidence, None)
    return TraceEstimate(estimate=mean, stderr=stderr, num_matvecs=used, method="hutchinson")


def trace_hutchpp(
    operator: LinearOperator | Tensor,
    num_matvecs: int,
    *,
    generator: torch.Generator,
    distribution: Literal["rademacher", "normal"] = "rademacher",
    halfwidth: float | None = None,
    confidence: float = 0.95,
) -> TraceEstimate:
    """Hutch++ (Meyer, Musco, Musco & Woodruff 2021): exact trace on a sketched top subspace + Hutchinson on the rest.

    With ``s = m // 3`` sketch columns ``S``, ``Q = orth(H S)``:

    .. math:: \\operatorname{tr}(H) \\approx \\operatorname{tr}(Q^\\top H Q)
              + \\frac{1}{m - 2s} \\sum_i g_i^\\top (I - QQ^\\top) H (I - QQ^\\top) g_i

    The standard error is that of the second (random) term; the first is exact given ``Q``.
    Hessians have a few large outliers, which the sketch removes, so Hutch++ has a much smaller
    variance than Hutchinson at the same budget.

    Args:
        operator: a :class:`~landscape.hessian.operator.LinearOperator` or a dense ``Tensor``.
        num_matvecs: budget of products (at least 3).
        generator: source of the sketch and the probes.
        distribution: ``"rademacher"`` or ``"normal"``.
        halfwidth: stop the random phase once ``z * stderr`` is below this (from the 10th probe on).
        confidence: level of that interval.

    Returns:
        :class:`TraceEstimate`.

    Raises:
        ConfigError: a budget below 3, or ``confidence`` outside ``(0, 1)``.
    """
    if num_matvecs < 3:
        raise ConfigError(f"Hutch++ needs num_matvecs >= 3 (sketch, projection, residual), got {num_matvecs}.")
    op = as_operator(operator)
    sketch_size = min(num_matvecs // 3, op.dim)
    sketch = op.matmat(random_probes(op.dim, sketch_size, generator, distribution, device=op.device))
    basis = torch.linalg.qr(sketch).Q
    exact_part = float(torch.trace(basis.T @ op.matmat(basis)))
    remaining = num_matvecs - 2 * sketch_size
    if remaining < 1 or sketch_size == op.dim:
        return TraceEstimate(estimate=exact_part, stderr=float("nan"), num_matvecs=2 * sketch_size, method="hutch++")
    mean, stderr, used = _sample_mean(op, remaining, generator, distribution, halfwidth, confidence, basis)
    return TraceEstimate(estimate=exact_part + mean, stderr=stderr, num_matvecs=2 * sketch_size + used, method="hutch++")


def mean_and_stderr(samples: Sequence[float]) -> tuple[float, float]:
    """The sample mean and its standard error ``s / sqrt(n)`` (``s``: the unbiased standard deviation).

    Sums are exact (``math.fsum``). The standard error is ``nan`` with fewer than two samples.

    Raises:
        ConfigError: no samples.
    """
    if not samples:
        raise ConfigError("mean_and_stderr needs at least one sample.")
    mean = math.fsum(samples) / len(samples)
    if len(samples) < 2:
        return mean, float("nan")
    variance = math.fsum((s - mean) ** 2 for s in samples) / (len(samples) - 1)
    return mean, math.sqrt(variance / len(samples))


def _z_score(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}.")
    return float(torch.special.ndtri(torch.tensor((1 + confidence) / 2, dtype=torch.float64)))
