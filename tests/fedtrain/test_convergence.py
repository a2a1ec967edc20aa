"""The convergence check: the least-squares slope of test accuracy over the last rounds, against hand and numpy values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedtrain.convergence import DEFAULT_THRESHOLD, Convergence, convergence_of
from fedtrain.io import read_json
from fedtrain.run import train
from tests.fedtrain.test_run import _one_thread, tiny  # noqa: F401 (autouse fixture: one torch thread, restored)


def _rows(rounds, accuracies):
    return [{"round": r, "test_accuracy": a, "model": "global"} for r, a in zip(rounds, accuracies)]


def test_a_flat_curve_has_converged_with_zero_gain():
    check = convergence_of(_rows(range(10, 101, 10), [0.7] * 10), rounds=100)
    assert check.rounds == (80, 100) and check.evaluations == 3
    assert check.slope_per_round == pytest.approx(0.0, abs=1e-12) and check.gain == pytest.approx(0.0, abs=1e-10)
    assert check.converged is True


def test_a_rising_curve_has_not_converged_and_its_gain_is_slope_times_window():
    # +0.25 points a round: 5 points over the last 20 of 100 rounds
    rows = _rows(range(1, 101), [0.3 + 0.0025 * r for r in range(1, 101)])
    check = convergence_of(rows, rounds=100)
    assert check.rounds == (80, 100) and check.evaluations == 21
    assert check.slope_per_round == pytest.approx(0.25)
    assert check.gain == pytest.approx(5.0)
    assert check.gain_stderr == pytest.approx(0.0, abs=1e-9)
    assert check.converged is False
    assert "+5.0 ± 0.0 points over the last 20% of rounds" == check.describe()


def test_a_noisy_flat_curve_has_converged_and_its_stderr_is_the_fits():
    rng = np.random.default_rng(0)
    rounds = np.arange(1, 201)
    accuracy = 0.6 + rng.normal(0.0, 0.02, size=rounds.size)  # 2 points of noise per evaluation
    check = convergence_of(_rows(rounds.tolist(), accuracy.tolist()), rounds=200)
    x, y = rounds[rounds >= 160], 100 * accuracy[rounds >= 160]
    fit = np.polyfit(x, y, 1)
    residual = y - np.polyval(fit, x)
    stderr = np.sqrt(residual @ residual / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    assert check.slope_per_round == pytest.approx(fit[0])
    assert check.gain_stderr == pytest.approx(stderr * 40)
    assert abs(check.gain) < DEFAULT_THRESHOLD and check.converged is True


def test_the_threshold_and_window_are_the_callers():
    rows = _rows(range(1, 11), [0.5 + 0.01 * r for r in range(1, 11)])  # 1 point a round
    assert convergence_of(rows, rounds=10, window=0.5, threshold=5.0).gain == pytest.approx(5.0)
    assert convergence_of(rows, rounds=10, window=0.5, threshold=4.9).converged is False
    assert convergence_of(rows, rounds=10, window=0.5, threshold=5.1).converged is True
    assert convergence_of(rows, rounds=10, window=0.5).rounds == (5, 10)


def test_too_few_evaluations_cannot_tell():
    check = convergence_of(_rows([50, 100], [0.1, 0.9]), rounds=100)
    assert (check.evaluations, check.gain, check.converged) == (1, None, None)
    assert "too few" in check.describe()
    two = convergence_of(_rows([80, 100], [0.5, 0.6]), rounds=100)
    assert two.gain == pytest.approx(10.0) and two.gain_stderr is None and two.converged is False


def test_the_record_round_trips_through_a_dict_and_skips_missing_accuracies():
    rows = _rows([70, 80, 90, 100], [0.5, 0.55, None, 0.6])
    check = convergence_of(rows)  # rounds: the last evaluated one
    assert check.evaluations == 2 and check.rounds == (80, 100)
    assert Convergence.from_dict(check.to_dict()) == check
    assert check.to_dict()["rounds"] == [80, 100]


@pytest.mark.parametrize("kwargs, match", [({"window": 0.0}, "window must be"), ({"window": 1.5}, "window must be"),
                                           ({"threshold": 0.0}, "threshold must be"), ({"rounds": 0}, "rounds must be")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convergence_of(_rows([1], [0.5]), **kwargs)


def test_a_finished_run_records_its_check_in_summary_json(tmp_path):

    summary = train(tiny(rounds=10, eval_every=1), tmp_path / "run")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    record = read_json(tmp_path / "run" / "summary.json")["convergence"]
    assert record == summary["convergence"] == convergence_of(metrics, 10).to_dict()
    assert record["rounds"] == [8, 10] and record["evaluations"] == 3 and record["window"] == 0.2
    assert record["converged"] == (record["gain"] < record["threshold"])
