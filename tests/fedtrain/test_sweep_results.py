"""The sweep's results: a point's mean and spread over seeds, its convergence, the tie rule, the paired margin, the table."""

from __future__ import annotations

import pytest

from fedtrain.sweep_results import best_points, point_label, summarise, sweep_table


def test_spread_over_seeds_and_the_tie_rule():
    runs = [{"algorithm": "fedsam", "rho": rho, "eta": None, "lr": 0.1, "seed": s, "accuracy": a}
            for rho, s, a in ((0.2, 0, 0.5), (0.2, 1, 0.7), (0.1, 0, 0.6), (0.1, 1, 0.6), (0.3, 0, 0.1))]
    points = summarise(runs)
    assert [p["rho"] for p in points] == [0.2, 0.1, 0.3]
    assert points[0]["mean"] == pytest.approx(0.6) and points[0]["std"] == pytest.approx(0.02 ** 0.5)  # ddof=1
    assert points[0]["stderr"] == pytest.approx(points[0]["std"] / 2 ** 0.5)
    assert points[2]["std"] is None and points[2]["stderr"] is None  # one seed: no spread claimed
    assert best_points(points)["per_algorithm"]["fedsam"]["rho"] == 0.1  # 0.6 == 0.6: the smaller rho


def test_a_point_converged_only_if_every_seed_did_and_a_rising_best_point_is_flagged():
    def run(seed, acc, converged, gain):
        return {"algorithm": "fedsam", "rho": 0.1, "eta": None, "lr": 0.1, "seed": seed, "accuracy": acc,
                "convergence": {"converged": converged, "gain": gain}}

    points = summarise([run(0, 0.5, True, 0.4), run(1, 0.6, False, 3.5)])
    assert points[0]["converged"] is False and points[0]["gain"] == 3.5
    assert summarise([run(0, 0.5, True, 0.4), run(1, 0.6, None, None)])[0]["converged"] is None
    assert summarise([run(0, 0.5, True, 0.4), run(1, 0.6, True, -1.0)])[0]["converged"] is True
    record = {"settings": {"dataset": "synthetic", "rounds": 4, "validation": 300}, "runs": [{"last_k": 2}] * 2,
              "points": points, "best": best_points(points)}
    table = sweep_table(record)
    assert "| fedsam | 0.1 | - | 0.1 | 2 | **55.00** | 7.07 | 50.00, 60.00 | no (+3.5) |" in table
    assert "still rising: up to +3.5 points" in table


def test_the_best_points_margin_over_its_runner_up_is_paired_by_seed():
    runs = [{"algorithm": "fedsam", "rho": rho, "eta": None, "lr": 0.1, "seed": s, "accuracy": a}
            for rho, s, a in ((0.1, 0, 0.70), (0.1, 1, 0.60), (0.1, 2, 0.65), (0.2, 0, 0.66), (0.2, 1, 0.58),
                              (0.2, 2, 0.62), (0.5, 0, 0.1), (0.5, 1, 0.1), (0.5, 2, 0.1))]
    best = best_points(summarise(runs))
    margin = best["margins"]["fedsam"]
    assert margin["runner_up"] == {"algorithm": "fedsam", "rho": 0.2, "eta": None, "lr": 0.1} and margin["n"] == 3
    assert margin["difference"] == pytest.approx(0.03)  # differences 0.04, 0.02, 0.03
    assert margin["stderr"] == pytest.approx(0.01 / 3 ** 0.5)
    assert best_points(summarise(runs[:3]))["margins"] == {}  # one point: no runner-up


def test_a_label_names_only_the_settings_a_point_has():
    assert point_label({"algorithm": "fedavg", "rho": None, "eta": None, "lr": 0.05}) == "fedavg lr=0.05"
    assert point_label({"algorithm": "fedasam", "rho": 0.5, "eta": 0.0, "lr": 0.05}) == "fedasam rho=0.5 eta=0 lr=0.05"
