"""The sharpness-during-training figure: the tracked rounds' series (2 / lr from each round's lr), one panel per run."""

from __future__ import annotations

import pytest

from fedtrain.errors import ConfigError
from landscape.plots.sharpness import plot_sharpness_during_training, sharpness_series

METRICS = [
    {"round": 5, "test_accuracy": 0.3, "lr": 0.05},  # evaluated, not tracked
    {"round": 10, "test_accuracy": 0.4, "lr": 0.05, "sharpness_lambda_max": 12.0, "sharpness_products": 7, "sharpness_seconds": 1.5},
    {"round": 20, "test_accuracy": 0.5, "lr": 0.001, "sharpness_lambda_max": 30.0, "sharpness_products": 5, "sharpness_seconds": 1.0},
]


def test_the_series_are_the_tracked_rounds_with_the_stability_threshold():
    s = sharpness_series(METRICS)
    assert s["round"] == [10, 20] and s["lambda_max"] == [12.0, 30.0] and s["products"] == [7, 5]
    assert s["threshold"] == pytest.approx([40.0, 2000.0]) and s["accuracy"] == [0.4, 0.5]


def test_the_figure_is_written_and_untracked_runs_are_refused(tmp_path):
    written = plot_sharpness_during_training({"FedAvg": METRICS, "FedSAM": METRICS}, tmp_path / "curves", title="quick")
    assert [p.suffix for p in written] == [".png", ".pdf"] and written[0].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="train the run with --track-sharpness"):
        plot_sharpness_during_training({"FedAvg": METRICS[:1]}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="at least one run"):
        plot_sharpness_during_training({}, tmp_path / "y.png")
