"""Paper figures from saved runs: labels from the run's TrainConfig, the SWA start where the training started SWA."""

from __future__ import annotations

import json

import pytest

import landscape.plots.paper as paper
from fedtrain.config import TrainConfig
from fedtrain.io import write_json


def _run(folder, **settings):
    config = TrainConfig(dataset="synthetic", model="mlp", rounds=20, **settings)
    write_json(folder / "config.json", config.to_dict())
    write_json(folder / "summary.json", {"last_k_mean_accuracy": 0.5, "last_k": 1})
    lines = [json.dumps({"round": r, "test_accuracy": 0.1 + 0.01 * r}) for r in range(0, 20, 5)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture
def captured(monkeypatch):
    figures = []
    monkeypatch.setattr(paper, "save_figure", lambda figure, path, **kwargs: figures.append(figure) or [path])
    return figures


def test_records_carry_the_saved_train_config_and_its_labels(tmp_path):
    (tmp_path / "a").mkdir()
    config = _run(tmp_path / "a", algorithm="fedasam", alpha=0.0, swa=True, seed=3)
    (record,) = paper.collect_runs([tmp_path])
    assert record.config == config
    assert (record.algorithm, record.split, record.seed) == ("FedASAM+SWA", "α = 0", 3)
    assert paper.split_label(TrainConfig(partition="iid")) == "iid"


def test_swa_start_is_the_configs_start_round_fraction_or_round(tmp_path, captured):
    for name, start in (("fraction", 0.5), ("round", 15), ("plain", None)):
        (tmp_path / name).mkdir()
        settings = {"swa": True, "swa_start": start} if start is not None else {"algorithm": "fedsam"}
        _run(tmp_path / name, alpha=0.0, **settings)
    records = paper.collect_runs([tmp_path])
    paper.plot_accuracy(records, tmp_path / "accuracy")
    (ax,) = captured[0].axes
    dotted = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":")
    assert dotted == [10, 15]
    assert dotted == sorted(r.config.swa_start_round for r in records if r.config.swa)


def _seeded_run(folder, seed, accuracies, *, algorithm="fedavg", record=None):
    """A 10-round run evaluated every round; ``record`` replaces the summary's convergence check when given."""
    folder.mkdir(parents=True)
    write_json(folder / "config.json", TrainConfig(dataset="synthetic", model="mlp", rounds=10, algorithm=algorithm,
                                                   seed=seed).to_dict())
    summary = {"last_k_mean_accuracy": accuracies[-1], "last_k": 1, **({"convergence": record} if record else {})}
    write_json(folder / "summary.json", summary)
    lines = [json.dumps({"round": r, "test_accuracy": a}) for r, a in enumerate(accuracies, start=1)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_rows_keep_each_seeds_numbers_and_the_worst_convergence_check_recomputed_for_old_runs(tmp_path):
    flat, rising = [0.5] * 10, [0.05 * r for r in range(1, 11)]  # rising: 5 points a round, 10 over the last 2 rounds
    _seeded_run(tmp_path / "s0", 0, flat)
    _seeded_run(tmp_path / "s1", 1, rising)
    _seeded_run(tmp_path / "sam0", 0, flat, algorithm="fedsam")
    (fedavg, fedsam) = paper.results_table(paper.collect_runs([tmp_path]))
    assert fedavg["per_seed"]["accuracy"] == {0: 0.5, 1: 0.5}
    assert fedavg["per_seed"]["converged"] == {0: True, 1: False}
    assert fedavg["per_seed"]["gain"][1] == pytest.approx(10.0)
    assert fedavg["converged"] is False and fedavg["gain"] == pytest.approx(10.0)
    assert fedsam["converged"] is True and fedsam["gain"] == pytest.approx(0.0, abs=1e-9)
    md, csv_file = paper.write_results_table([fedavg, fedsam], tmp_path)
    assert "+10.0 points (still rising)" in md.read_text() and "last 20% of rounds" in md.read_text()
    assert '"converged": {"0": true, "1": false}' in csv_file.read_text().replace('""', '"')


def test_a_recorded_check_is_read_from_the_summary_not_recomputed(tmp_path):
    from fedtrain.convergence import convergence_of

    record = {**convergence_of([{"round": 10, "test_accuracy": 0.5}], 10).to_dict(), "gain": 7.0, "converged": False}
    _seeded_run(tmp_path / "s0", 0, [0.5] * 10, record=record)
    (row,) = paper.results_table(paper.collect_runs([tmp_path]))
    assert row["gain"] == 7.0 and row["converged"] is False


def test_a_damaged_convergence_record_is_recomputed_from_the_metrics(tmp_path):
    _seeded_run(tmp_path / "s0", 0, [0.05 * r for r in range(1, 11)], record={"window": "a fifth"})
    (row,) = paper.results_table(paper.collect_runs([tmp_path]))
    assert row["converged"] is False and row["gain"] == pytest.approx(10.0)
