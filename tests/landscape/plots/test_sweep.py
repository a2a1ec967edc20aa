"""The sweep figure: validation accuracy against rho from a sweep record, FedAvg as a level, written as PNG and PDF."""

from __future__ import annotations

import pytest

from fedtrain.errors import ConfigError
from fedtrain.sweep_results import best_points, summarise
from landscape.plots.sweep import plot_sweep


def record() -> dict:
    runs = [{"algorithm": a, "rho": rho, "eta": eta, "lr": 0.05, "seed": s, "accuracy": acc}
            for a, rho, eta, s, acc in (("fedavg", None, None, 0, 0.6), ("fedavg", None, None, 1, 0.62),
                                         ("fedsam", 0.01, None, 0, 0.61), ("fedsam", 0.01, None, 1, 0.63),
                                         ("fedsam", 0.1, None, 0, 0.66), ("fedsam", 0.1, None, 1, 0.64),
                                         ("fedasam", 0.5, 0.2, 0, 0.65), ("fedasam", 0.5, 0.2, 1, 0.69))]
    points = summarise(runs)
    return {"settings": {"dataset": "fashion-mnist", "rounds": 40}, "points": points, "best": best_points(points)}


def test_the_figure_is_written_as_png_and_pdf(tmp_path):
    written = plot_sweep(record(), tmp_path / "sweep")
    assert [p.suffix for p in written] == [".png", ".pdf"]
    assert written[0].read_bytes()[:4] == b"\x89PNG" and written[1].read_bytes()[:4] == b"%PDF"


def test_a_record_without_points_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="holds no point to plot"):
        plot_sweep({"points": []}, tmp_path / "x.png")
