"""Which flatness measure explains accuracy: Kendall's tau and its p-value checked by enumerating every ordering, the
seeded permutation test under ties, and the verdict line of the table."""

from __future__ import annotations

import itertools
import math

import pytest

from landscape.report.claims import measure_correlations, write_measure_table


def _tau(x, y):
    n = len(x)
    s = sum((1 if (x[i] - x[j]) * (y[i] - y[j]) > 0 else -1) for i in range(n) for j in range(i + 1, n))
    return s / (n * (n - 1) / 2)


def test_tau_and_its_exact_p_value_equal_the_enumeration_of_all_orderings():
    x = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0]
    y = [0.6, 0.7, 0.5, 0.65, 0.55, 0.3]
    rows = [{"lambda_max": a, "accuracy": b, "gap": -b} for a, b in zip(x, y)]
    (acc, gap) = measure_correlations(rows, ["lambda_max"])
    tau = _tau(x, y)
    null = [_tau(x, list(p)) for p in itertools.permutations(y)]
    p_value = sum(abs(t) >= abs(tau) - 1e-12 for t in null) / math.factorial(len(x))
    assert acc.tau == pytest.approx(tau) and acc.p_value == pytest.approx(p_value) and acc.method == "exact"
    assert gap.tau == pytest.approx(-tau)
    assert acc.explains and gap.explains  # sharper: lower accuracy and a larger gap, p < 0.05


def test_ties_use_a_seeded_permutation_test_and_too_few_models_give_none():
    rows = [{"m": v, "accuracy": a, "gap": 0.0} for v, a in [(1, 0.9), (1, 0.8), (2, 0.7), (3, 0.7), (4, 0.5), (5, 0.4)]]
    first = measure_correlations(rows, ["m"], ["accuracy"], permutations=2000, seed=3)[0]
    again = measure_correlations(rows, ["m"], ["accuracy"], permutations=2000, seed=3)[0]
    assert first == again and first.method == "permutation (2000, seed 3)" and first.tau < -0.8 and first.p_value < 0.05
    few = measure_correlations(rows[:2], ["m"], ["accuracy"])[0]
    assert few.tau is None and few.p_value is None and not few.explains


def test_the_table_names_the_measures_that_explain_accuracy_or_says_none_does(tmp_path):
    rows = [{"good": i, "noise": (i * 7) % 5, "accuracy": 1 - 0.1 * i, "gap": 0.1 * i} for i in range(7)]
    path = tmp_path / "table.md"
    write_measure_table(measure_correlations(rows, ["good", "noise"]), path, invariant={"good": True, "noise": False})
    text = path.read_text()
    assert "| good | yes | -1.00" in text and "Measures that explain test accuracy here: good." in text
    write_measure_table(measure_correlations(rows, ["noise"]), path)
    assert "No measure explains test accuracy here" in path.read_text()
