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
