"""Paired comparisons across seeds: the t-interval and p-value against scipy and hand values, pairing by seed, the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from landscape.report.statistics import PairedComparison, paired_comparison


def test_three_seeds_give_the_hand_computed_t_interval_and_scipys_paired_p_value():
    a = {0: 0.60, 1: 0.62, 2: 0.64}
    b = {0: 0.55, 1: 0.56, 2: 0.61}
    c = paired_comparison(a, b)
    # differences 0.05, 0.06, 0.03: mean 0.04667, sd 0.015275, t_{2, 0.975} = 4.302653
    assert c.seeds == (0, 1, 2) and c.n == 3
    assert c.mean == pytest.approx(0.14 / 3)
    assert c.std == pytest.approx(0.0152752523)
    half = 4.302652729 * 0.0152752523 / math.sqrt(3)
    assert (c.low, c.high) == (pytest.approx(0.14 / 3 - half), pytest.approx(0.14 / 3 + half))
    assert c.p_value == pytest.approx(stats.ttest_rel([0.60, 0.62, 0.64], [0.55, 0.56, 0.61]).pvalue)
    assert c.sign == 1 and c.bootstrap_low is None


def test_pairs_by_seed_not_by_position_and_leaves_out_unpaired_or_missing_seeds():
    a = {2: 1.0, 0: 3.0, 1: 2.0, 7: 9.0}
    b = {0: 1.0, 1: 1.5, 2: 0.0, 5: 4.0}
    c = paired_comparison(a, b)
    assert c.seeds == (0, 1, 2) and c.differences == (2.0, 0.5, 1.0)
    assert paired_comparison({0: 1.0, 1: None}, {0: 0.5, 1: 0.2}).seeds == (0,)
    assert paired_comparison({0: 1.0}, {1: 1.0}) is None


def test_an_interval_holding_zero_has_no_sign_and_a_large_p_value():
    c = paired_comparison({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 1.0, 2: 3.5})
    assert c.low < 0 < c.high and c.sign == 0 and c.p_value > 0.05
    assert "[" in c.describe() and "3 seeds" in c.describe()


def test_an_interval_below_zero_has_sign_minus_one():
    c = paired_comparison({0: 1.0, 1: 1.1, 2: 0.9, 3: 1.05}, {0: 2.0, 1: 2.2, 2: 1.9, 3: 2.0})
    assert c.high < 0 and c.sign == -1 and c.p_value < 0.01


def test_one_seed_has_no_interval_and_says_so():
    c = paired_comparison({0: 0.5}, {0: 0.4})
    assert c.mean == pytest.approx(0.1) and (c.low, c.high, c.p_value, c.std) == (None, None, None, None)
    assert c.sign == 0 and "one seed: no interval over seeds" in c.describe(scale=100)


def test_identical_differences_have_a_zero_width_interval_and_a_definite_p_value():
    c = paired_comparison({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
    assert (c.low, c.high, c.p_value) == (1.0, 1.0, 0.0) and c.sign == 1
    assert paired_comparison({0: 1.0, 1: 3.0}, {0: 1.0, 1: 3.0}).p_value == 1.0


def test_from_five_seeds_a_seeded_bootstrap_interval_brackets_the_mean_and_repeats():
    rng = np.random.default_rng(1)
    a = {s: float(v) for s, v in enumerate(rng.normal(1.0, 0.5, 8))}
    b = {s: 0.0 for s in range(8)}
    c = paired_comparison(a, b, seed=4)
    assert c.bootstrap_low < c.mean < c.bootstrap_high
    assert c.bootstrap == "percentile, 10000 resamples, seed 4"
    assert paired_comparison(a, b, seed=4) == c
    # the percentile interval of the mean is close to the t-interval for normal differences
    assert abs(c.bootstrap_low - c.low) < 0.3 and abs(c.bootstrap_high - c.high) < 0.3
    assert "bootstrap [" in c.describe()


def test_the_t_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        d = rng.normal(0.7, 1.0, 4)
        c = paired_comparison(dict(enumerate(d)), dict.fromkeys(range(4), 0.0))
        covered += c.low <= 0.7 <= c.high
    assert 0.93 < covered / 2000 < 0.97


def test_a_bad_confidence_is_refused():
    with pytest.raises(ValueError, match="confidence must be in"):
        paired_comparison({0: 1.0}, {0: 1.0}, confidence=1.0)


def test_the_record_is_frozen():
    c = paired_comparison({0: 1.0, 1: 2.0}, {0: 0.0, 1: 0.0})
    assert isinstance(c, PairedComparison)
    with pytest.raises(AttributeError):
        c.mean = 0.0  # type: ignore[misc]
