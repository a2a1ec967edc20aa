"""Partition figure: one stacked bar per client whose height is the client's size, one legend entry per class."""

from __future__ import annotations

import numpy as np
import pytest

import landscape.plots.partition as partition_plot
from fedtrain.partition import build_partition


@pytest.fixture
def captured(monkeypatch):
    figures = []
    real_save = partition_plot.save_figure

    def save(figure, path, **kwargs):
        figures.append(figure)
        return real_save(figure, path, **kwargs)

    monkeypatch.setattr(partition_plot, "save_figure", save)
    return figures


def test_bars_stack_every_class_of_every_client(tmp_path, captured):
    part = build_partition("synthetic", scheme="dirichlet", num_clients=12, alpha=0.5, seed=3)
    names = [f"c{k}" for k in range(part.num_classes)]
    written = partition_plot.plot_label_distribution(part, tmp_path / "dist.png", class_names=names)
    assert written == [tmp_path / "dist.png"] and written[0].read_bytes()[:4] == b"\x89PNG"
    (ax,) = captured[0].axes
    heights = np.zeros(part.num_clients)
    for container in ax.containers:
        heights += [bar.get_height() for bar in container]
    assert heights.tolist() == part.label_histograms.sum(dim=1).tolist()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == names
    assert "12 clients" in ax.get_title()


def test_a_path_without_suffix_gives_png_and_pdf(tmp_path):
    part = build_partition("synthetic", scheme="iid", num_clients=4, seed=0)
    written = partition_plot.plot_label_distribution(part, tmp_path / "alpha-0.1")
    assert written == [tmp_path / "alpha-0.1.png", tmp_path / "alpha-0.1.pdf"]
    assert all(p.is_file() for p in written)
