"""Claim verdicts from a results table: held, did not hold, not measured, and the spread caveat."""

from __future__ import annotations

from landscape.report.claims import check_claims, write_claims


def _row(split, algorithm, accuracy, lam, ratio=2.0, std=None):
    return {"split": split, "algorithm": algorithm, "accuracy": accuracy, "accuracy_std": std, "lambda_1": lam,
            "lambda_1_std": None, "ratio": ratio, "ratio_std": None}


def _verdicts(rows):
    return {c.text.split(",")[0] + " | " + c.text: c for c in check_claims(rows)}


def test_a_table_that_follows_the_paper_holds_every_claim():
    rows = [
        _row("α = 0", "FedAvg", 0.50, 9.0, 3.0), _row("α = 0", "FedSAM", 0.55, 6.0, 2.5), _row("α = 0", "FedASAM", 0.57, 5.0, 2.0),
        _row("α = 0", "FedAvg+SWA", 0.53, 7.0), _row("α = 0", "FedSAM+SWA", 0.58, 5.0), _row("α = 0", "FedASAM+SWA", 0.60, 4.0),
        _row("α = 100", "FedAvg", 0.80, 4.0), _row("α = 100", "FedASAM", 0.81, 3.0),
        _row("α = 0.5", "FedAvg", 0.70, 6.0), _row("α = 0.5", "FedASAM", 0.72, 4.5),
    ]
    claims = check_claims(rows)
    assert len(claims) == 8
    assert all(c.held is True for c in claims), [(c.text, c.evidence) for c in claims if not c.held]


def test_a_contrary_result_is_reported_as_not_holding_with_numbers():
    rows = [_row("α = 0", "FedAvg", 0.60, 5.0), _row("α = 0", "FedSAM", 0.55, 6.0), _row("α = 0", "FedASAM", 0.57, 5.5)]
    accuracy = next(c for c in check_claims(rows) if "higher test accuracy" in c.text)
    assert accuracy.held is False
    assert "FedSAM 55% vs FedAvg 60%" in accuracy.evidence


def test_two_losses_are_not_a_largest_gain_and_a_weak_correlation_is_not_evidence():
    rows = [_row("α = 0", "FedAvg", 0.57, 37.0), _row("α = 0", "FedASAM", 0.51, 15.0),
            _row("α = 100", "FedAvg", 0.75, 22.0), _row("α = 100", "FedASAM", 0.68, 8.0),
            _row("α = 0", "FedSAM", 0.49, 21.0)]
    claims = check_claims(rows)
    gain = next(c for c in claims if "most of all" in c.text)
    assert gain.held is False and "-6.00 points at α = 0" in gain.evidence
    correlation = next(c for c in claims if "rank-correlated" in c.text)
    assert correlation.held is False and "p = " in correlation.evidence


def test_missing_runs_are_not_measured_and_small_gaps_are_flagged():
    rows = [_row("α = 0", "FedAvg", 0.50, 5.0, std=0.05), _row("α = 0", "FedSAM", 0.52, 4.0, std=0.04)]
    claims = check_claims(rows)
    swa = next(c for c in claims if "SWA raises" in c.text)
    assert swa.held is None and "not measured" in swa.evidence
    accuracy = next(c for c in claims if "higher test accuracy" in c.text)
    assert accuracy.held is True  # FedASAM is missing: the verdict rests on FedSAM alone ...
    assert "smaller than the spread over seeds" in accuracy.evidence  # ... and says the gap is within noise


def test_claims_are_written_as_a_markdown_table(tmp_path):
    rows = [_row("α = 0", "FedAvg", 0.6, 5.0), _row("α = 0", "FedSAM", 0.5, 6.0)]
    [path] = write_claims(check_claims(rows), tmp_path / "claims.md")
    text = path.read_text()
    assert text.startswith("| claim") and "**did not hold**" in text and "**not measured**" in text


# --- verdicts with seeds: rows as landscape.plots.paper.results_table writes them, per-seed values kept ---

import pytest  # noqa: E402

from landscape.report.claims import VERDICTS, Claim  # noqa: E402


def _seeded(split, algorithm, accuracy, lam, *, gains=None, ratio=None):
    """A results-table row from per-seed values (lists indexed by seed); ``gains`` in points (converged below 2)."""
    import numpy as np

    seeds = range(len(accuracy))
    gains = gains or [0.5] * len(accuracy)
    ratio = ratio or [2.0] * len(accuracy)
    mean = lambda v: float(np.mean(v))  # noqa: E731
    std = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else None  # noqa: E731
    return {
        "split": split, "algorithm": algorithm, "seeds": len(accuracy),
        "accuracy": mean(accuracy), "accuracy_std": std(accuracy), "lambda_1": mean(lam), "lambda_1_std": std(lam),
        "ratio": mean(ratio), "ratio_std": std(ratio), "converged": all(g < 2.0 for g in gains), "gain": max(gains),
        "convergence_window": 0.2,
        "per_seed": {"accuracy": dict(zip(seeds, accuracy)), "lambda_1": dict(zip(seeds, lam)), "ratio": dict(zip(seeds, ratio)),
                     "gain": dict(zip(seeds, gains)), "converged": {s: g < 2.0 for s, g in zip(seeds, gains)}},
    }


def _claim(rows, words):
    return next(c for c in check_claims(rows) if words in c.text)


def test_held_when_the_paired_interval_excludes_zero_on_the_claimed_side():
    # FedSAM beats FedAvg by 3-5 points in every seed although the seeds themselves differ by 10 points:
    # pairing by seed removes the shared seed effect.
    rows = [_seeded("α = 0", "FedAvg", [0.50, 0.60, 0.55], [9.0, 9.5, 8.0]),
            _seeded("α = 0", "FedSAM", [0.54, 0.63, 0.60], [6.0, 6.5, 5.5])]
    accuracy = _claim(rows, "higher test accuracy")
    assert accuracy.verdict == "held" and accuracy.held is True
    assert "95% interval over 3 seeds excludes 0" in accuracy.reason
    assert "FedSAM - FedAvg +4.00 points [" in accuracy.evidence and "t-interval, p = " in accuracy.evidence
    assert "FedSAM 59% ± 4.6 vs FedAvg 55% ± 5 (mean ± std over seeds)" in accuracy.evidence
    assert "FedASAM not measured" in accuracy.reason  # the part of the claim these runs cannot speak to
    assert _claim(rows, "lower λ_max (flatter)").verdict == "held"


def test_did_not_hold_when_the_interval_excludes_zero_on_the_other_side():
    rows = [_seeded("α = 0", "FedAvg", [0.50, 0.60, 0.55], [5.0, 5.5, 6.0]),
            _seeded("α = 0", "FedSAM", [0.54, 0.63, 0.60], [7.0, 7.4, 8.1])]
    flat = _claim(rows, "lower λ_max (flatter)")
    assert flat.verdict == "did not hold" and flat.held is False
    assert "excludes 0 on the other side" in flat.reason and "FedSAM - FedAvg +2.00 [" in flat.evidence


def test_inconclusive_when_the_difference_is_within_the_seed_spread():
    rows = [_seeded("α = 0", "FedAvg", [0.50, 0.60, 0.55], [9.0, 5.0, 7.0]),
            _seeded("α = 0", "FedSAM", [0.53, 0.58, 0.56], [6.0, 8.0, 6.5])]
    accuracy = _claim(rows, "higher test accuracy")
    assert accuracy.verdict == "inconclusive" and accuracy.held is None
    assert "difference +0.67 points [" in accuracy.reason and "within the seed spread, 3 seeds" in accuracy.reason
    assert _claim(rows, "lower λ_max (flatter)").verdict == "inconclusive"


def test_inconclusive_when_a_run_an_accuracy_claim_rests_on_was_still_rising():
    # the same clear win as in the 'held' test, but FedSAM seed 1 gained 4.1 points over its last 20% of rounds
    rows = [_seeded("α = 0", "FedAvg", [0.50, 0.60, 0.55], [9.0, 9.5, 8.0]),
            _seeded("α = 0", "FedSAM", [0.54, 0.63, 0.60], [6.0, 6.5, 5.5], gains=[0.3, 4.1, -0.2])]
    accuracy = _claim(rows, "higher test accuracy")
    assert accuracy.verdict == "inconclusive"
    assert "accuracy still rising, +4.1 points over the last 20% of rounds (FedSAM seed 1)" in accuracy.reason
    assert "+4.00 points [" in accuracy.evidence  # the numbers are still shown
    # curvature claims do not depend on the accuracy curve
    assert _claim(rows, "lower λ_max (flatter)").verdict == "held"


def test_not_measured_when_a_run_is_missing_and_one_seed_says_it_has_no_interval():
    rows = [_seeded("α = 0", "FedAvg", [0.50], [9.0]), _seeded("α = 0", "FedSAM", [0.55], [6.0])]
    swa = _claim(rows, "SWA raises")
    assert swa.verdict == "not measured" and swa.held is None and "FedAvg+SWA not measured" in swa.reason
    accuracy = _claim(rows, "higher test accuracy")
    assert accuracy.verdict == "held" and "one seed: no interval over seeds" in accuracy.reason


def test_one_seed_within_the_data_standard_error_is_inconclusive():
    avg, sam = _seeded("α = 0", "FedAvg", [0.50], [9.0]), _seeded("α = 0", "FedSAM", [0.55], [8.0])
    avg["lambda_1_stderr"], sam["lambda_1_stderr"] = 0.5, 0.4  # 1.96 * hypot = 1.25 > the difference 1.0
    flat = _claim([avg, sam], "lower λ_max (flatter)")
    assert flat.verdict == "inconclusive" and "within the data noise (±1.25" in flat.reason
    assert "FedSAM 8 vs FedAvg 9 (data standard errors ±0.4, ±0.5)" in flat.evidence
    sam["lambda_1"] = sam["per_seed"]["lambda_1"][0] = 7.0  # a difference of 2 > 1.25
    assert _claim([avg, sam], "lower λ_max (flatter)").verdict == "held"


def test_the_largest_gain_claim_pairs_the_gains_by_seed():
    rows = [_seeded("α = 0", "FedAvg", [0.50, 0.60, 0.55], [9.0, 9.5, 8.0]),
            _seeded("α = 0", "FedASAM", [0.56, 0.65, 0.60], [6.0, 6.5, 5.5]),
            _seeded("α = 100", "FedAvg", [0.80, 0.82, 0.81], [4.0, 4.0, 4.0]),
            _seeded("α = 100", "FedASAM", [0.81, 0.83, 0.81], [3.0, 3.0, 3.0])]
    gain = _claim(rows, "most of all")
    assert gain.verdict == "held", gain.reason
    assert "FedASAM - FedAvg accuracy: +5.33 points at α = 0, +0.67 at α = 100" in gain.evidence
    assert "gain at α = 0 minus gain at α = 100: +4.67 points [" in gain.evidence


def test_the_correlation_counts_every_seeds_run_as_a_model():
    rows = [_seeded("α = 0", "FedAvg", [0.50, 0.52], [9.0, 8.0]), _seeded("α = 0", "FedSAM", [0.60, 0.62], [6.0, 5.0]),
            _seeded("α = 0", "FedASAM", [0.70, 0.72], [4.0, 3.0])]
    correlation = _claim(rows, "rank-correlated")
    assert "over 6 models" in correlation.evidence and "-1.00" in correlation.evidence
    assert correlation.verdict == "held"


def test_a_claim_takes_only_the_four_verdicts_and_held_maps_them():
    assert VERDICTS == ("held", "did not hold", "inconclusive", "not measured")
    assert [Claim("c", v, "e").held for v in VERDICTS] == [True, False, None, None]
    assert Claim("c", "held", "e").reason == ""
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("c", "True", "e")


def test_the_markdown_table_has_a_reason_column_and_states_the_rules(tmp_path):
    rows = [_seeded("α = 0", "FedAvg", [0.50, 0.60, 0.55], [9.0, 5.0, 7.0]),
            _seeded("α = 0", "FedSAM", [0.53, 0.58, 0.56], [6.0, 8.0, 6.5])]
    [path] = write_claims(check_claims(rows), tmp_path / "claims.md", seeds=3)
    text = path.read_text()
    assert text.startswith("| claim (Caldarola et al., ECCV 2022) | verdict here | reason | evidence |")
    assert "| **inconclusive** | FedSAM - FedAvg: difference" in text
    assert "paired by seed" in text and "One seed per run" not in text


def test_runs_on_disk_are_paired_by_seed_and_an_old_runs_rising_curve_is_found_in_its_metrics(tmp_path):
    """End to end from run folders (summary.json without a convergence record, as before the check existed)."""
    import json

    from fedtrain.config import TrainConfig
    from fedtrain.io import write_json
    from landscape.plots.paper import collect_runs, results_table

    def run(name, algorithm, seed, final, rising=False):
        folder = tmp_path / name
        folder.mkdir()
        write_json(folder / "config.json", TrainConfig(dataset="synthetic", model="mlp", rounds=10, alpha=0.0,
                                                       algorithm=algorithm, seed=seed).to_dict())
        write_json(folder / "summary.json", {"last_k_mean_accuracy": final, "last_k": 1})
        curve = [final - (0.05 * (10 - r) if rising else 0.0) for r in range(1, 11)]  # rising: 5 points a round
        (folder / "metrics.jsonl").write_text("".join(json.dumps({"round": r, "test_accuracy": a}) + "\n"
                                                      for r, a in enumerate(curve, start=1)))

    for seed, (avg, sam) in enumerate([(0.50, 0.54), (0.60, 0.63), (0.55, 0.60)]):
        run(f"avg{seed}", "fedavg", seed, avg)
        run(f"sam{seed}", "fedsam", seed, sam, rising=seed == 2)
    claim = next(c for c in check_claims(results_table(collect_runs([tmp_path]))) if "higher test accuracy" in c.text)
    assert claim.verdict == "inconclusive"
    assert "accuracy still rising, +10.0 points over the last 20% of rounds (FedSAM seed 2)" in claim.reason
    assert "FedSAM - FedAvg +4.00 points [" in claim.evidence and "3 seeds" in claim.evidence


def test_a_check_passed_with_a_fit_too_noisy_to_tell_is_stated_in_the_evidence():
    rows = [_seeded("α = 0", "FedAvg", [0.50], [9.0], gains=[-6.2]), _seeded("α = 0", "FedSAM", [0.49], [6.0], gains=[-9.8])]
    rows[1]["per_seed"]["gain_stderr"] = {0: 17.8}
    accuracy = _claim(rows, "higher test accuracy")
    assert accuracy.verdict == "did not hold"  # the rule is the gain; its uncertainty is reported, not judged
    assert "convergence fit imprecise, gain in points: FedSAM seed 0 -9.8 ± 17.8" in accuracy.evidence
