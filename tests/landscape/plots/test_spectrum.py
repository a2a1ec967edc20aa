"""Spectral density plots: log-scale density with the top eigenvalues marked; PNG/PDF written atomically."""

from __future__ import annotations

import pytest
import torch

from fedtrain.errors import ConfigError
from landscape.hessian.density import smooth_density
from landscape.plots.figure import new_figure
from landscape.plots.spectrum import draw_spectral_density, plot_spectral_density
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)


def _report():
    grid, values = smooth_density(torch.tensor([[0.0, 0.1, 2.0]]), torch.tensor([[0.5, 0.4, 0.1]]), bandwidth=0.02)
    return {"eigenvalues": [2.0, 0.1], "density": {"grid": grid.tolist(), "values": values.tolist()}}


def test_draw_overlays_models_on_one_log_scale_axes():
    report = _report()
    ax = new_figure().subplots()
    draw_spectral_density(ax, report["density"]["grid"], report["density"]["values"], eigenvalues=[2.0, 0.1], label="FedAvg")
    draw_spectral_density(ax, report["density"]["grid"], report["density"]["values"], label="FedSAM", color="red")
    assert ax.get_yscale() == "log"
    assert len(ax.get_lines()) == 2 + 2  # two densities + two eigenvalue markers
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["FedAvg", "FedSAM"]


def test_plot_writes_png_and_pdf(tmp_path):
    written = plot_spectral_density(_report(), tmp_path / "esd.png", pdf=True)
    assert written == [tmp_path / "esd.png", tmp_path / "esd.pdf"]
    assert (tmp_path / "esd.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "esd.pdf").read_bytes()[:4] == b"%PDF"


def test_plot_refuses_reports_without_density_and_unknown_suffixes(tmp_path):
    with pytest.raises(ConfigError, match="no eigenvalue density to plot"):
        plot_spectral_density({"eigenvalues": [1.0], "density": None}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="must end in .png or .pdf"):
        plot_spectral_density(_report(), tmp_path / "x.svg")
    assert list(tmp_path.iterdir()) == []
