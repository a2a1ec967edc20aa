"""Paired comparisons of two methods across seeds: the mean difference, its 95 % interval and p-value, as a record.

Runs of the same seed share the partition, the initial model and the clients drawn each round, so the seed
is a block: the comparison is made on the per-seed differences :math:`d_s = a_s - b_s` (a paired design,
which removes the between-seed variation both methods share). With :math:`n` seeds, mean :math:`\\bar d` and
sample standard deviation :math:`s_d`, the Student-t interval and the paired t-test are

.. math::

    \\bar d \\pm t_{n-1,\\,1-\\alpha/2} \\, \\frac{s_d}{\\sqrt n}, \\qquad
    t = \\frac{\\bar d}{s_d / \\sqrt n}, \\quad p = 2\\,P(T_{n-1} > |t|)

(e.g. Wasserman, *All of Statistics*, 10.1 and 7; ``scipy.stats.ttest_rel``). The t-interval assumes the
differences roughly normal; from 5 seeds on a seeded percentile bootstrap interval of :math:`\\bar d` (Efron &
Tibshirani 1993, ch. 13) is given beside it as a check that needs no normality. One seed gives no interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedComparison", "paired_comparison", "BOOTSTRAP_MIN_SEEDS"]

BOOTSTRAP_MIN_SEEDS = 5


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` over the seeds both have.

    Attributes:
        seeds: the seeds paired, ascending.
        differences: ``a[s] - b[s]`` for each of ``seeds``.
        mean: the mean difference.
        std: the sample standard deviation of the differences (``None`` for one seed).
        low, high: the ``confidence`` t-interval of the mean difference (``None`` for one seed).
        p_value: the two-sided paired t-test of a zero mean difference (``None`` for one seed).
        confidence: the interval's level.
        bootstrap_low, bootstrap_high: the percentile bootstrap interval (``None`` below
            :data:`BOOTSTRAP_MIN_SEEDS` seeds).
        bootstrap: how the bootstrap was drawn (resamples and seed), or ``""``.
    """

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    std: float | None
    low: float | None
    high: float | None
    p_value: float | None
    confidence: float = 0.95
    bootstrap_low: float | None = None
    bootstrap_high: float | None = None
    bootstrap: str = ""

    @property
    def n(self) -> int:
        """Seeds paired."""
        return len(self.seeds)

    @property
    def sign(self) -> int:
        """+1 when the interval lies above 0, -1 below, 0 when it holds 0 or there is none (one seed)."""
        if self.low is None or self.high is None:
            return 0
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def describe(self, *, scale: float = 1.0, unit: str = "", digits: int = 2) -> str:
        """``-1.20 [-3.40, +1.00] (95% t-interval, p = 0.31, 3 seeds)``, values times ``scale``."""
        if self.low is None or self.high is None:
            return f"{self.mean * scale:+.{digits}f}{unit} (one seed: no interval over seeds)"
        text = (f"{self.mean * scale:+.{digits}f}{unit} [{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}] "
                f"({self.confidence:.0%} t-interval, p = {self.p_value:.2g}, {self.n} seeds")
        if self.bootstrap_low is not None and self.bootstrap_high is not None:
            text += f"; bootstrap [{self.bootstrap_low * scale:+.{digits}f}, {self.bootstrap_high * scale:+.{digits}f}]"
        return text + ")"


def paired_comparison(a: Mapping[int, float], b: Mapping[int, float], *, confidence: float = 0.95,
                      resamples: int = 10000, seed: int = 0) -> PairedComparison | None:
    """The paired comparison of ``a - b`` over the seeds both measured.

    Args:
        a, b: seed -> value (e.g. each run's final accuracy); ``None`` values are left out.
        confidence: the level of the intervals, in (0, 1).
        resamples: bootstrap resamples (from :data:`BOOTSTRAP_MIN_SEEDS` seeds on).
        seed: the bootstrap's seed (recorded in :attr:`PairedComparison.bootstrap`).

    Returns:
        The comparison, or ``None`` when no seed has both values.

    Raises:
        ValueError: ``confidence`` outside (0, 1).
    """
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1). Got {confidence}.")
    seeds = tuple(sorted(s for s in a if s in b and a[s] is not None and b[s] is not None))
    if not seeds:
        return None
    d = np.array([float(a[s]) - float(b[s]) for s in seeds])
    mean = float(d.mean())
    if len(d) == 1:
        return PairedComparison(seeds, (mean,), mean, None, None, None, None, confidence)
    std = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1)) * std / math.sqrt(len(d))
    if std == 0.0:
        # Identical differences: t is infinite (or undefined at 0); scipy would return nan.
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        p_value = float(stats.ttest_rel(d, np.zeros_like(d)).pvalue)
    boot_low = boot_high = None
    described = ""
    if len(d) >= BOOTSTRAP_MIN_SEEDS:
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
        boot_low, boot_high = (float(q) for q in np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2]))
        described = f"percentile, {resamples} resamples, seed {seed}"
    return PairedComparison(seeds, tuple(float(x) for x in d), mean, std, mean - half, mean + half, p_value, confidence,
                            boot_low, boot_high, described)
