"""Surface figures: shared colour scales, log scale, model marks, 1-D bands, PNG + PDF files, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from fedtrain.errors import ConfigError
from landscape.surface.record import Surface
from landscape.plots.surface import (
    draw_curve_1d,
    draw_heatmap,
    draw_surface_3d,
    mark_models,
    plot_surfaces,
    shared_limits,
    write_figures,
)


def bowl(scale: float, kind: str = "random", **meta) -> Surface:
    x = np.linspace(-1, 1, 5)
    y = np.linspace(-1, 1, 5)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    loss = 0.2 + scale * (xx**2 + yy**2)
    values = {"train_loss": loss, "train_loss_stderr": 0.01 * loss, "train_acc": 100 - 10 * loss, "train_acc_stderr": 0.5 + 0 * loss}
    return Surface(x, y, values, np.ones(loss.shape, bool), {"kind": kind, **meta})


def curve() -> Surface:
    t = np.linspace(-0.5, 1.5, 9)
    loss = 1 + (t - 0.5) ** 2
    values = {"train_loss": loss, "train_loss_stderr": 0.05 + 0 * t, "train_acc": 50 + 0 * t, "train_acc_stderr": 1 + 0 * t}
    return Surface(t, None, values, np.ones(9, bool), {"kind": "interpolation", "directions": {"model_coordinates": [[0.0], [1.0]]}})


def test_shared_limits_cover_every_surface_and_draws_use_them():
    flat, sharp = bowl(0.5), bowl(4.0)
    vmin, vmax = shared_limits([flat, sharp], "train_loss")
    assert vmin == pytest.approx(0.2) and vmax == pytest.approx(0.2 + 4.0 * 2)
    figure = Figure()
    meshes = [draw_heatmap(figure.add_subplot(1, 2, k + 1), s, "train_loss", vmin=vmin, vmax=vmax) for k, s in enumerate((flat, sharp))]
    assert meshes[0].get_clim() == meshes[1].get_clim() == (vmin, vmax)
    surface_3d = draw_surface_3d(Figure().add_subplot(projection="3d"), flat, vmin=vmin, vmax=vmax)
    assert surface_3d.get_clim() == (vmin, vmax)
    log_min, log_max = shared_limits([flat, sharp], "train_loss", log_scale=True)
    assert log_min == pytest.approx(np.log10(0.2)) and log_max == pytest.approx(np.log10(8.2))


def test_plane_models_are_marked_and_labelled():
    plane = bowl(1.0, kind="plane", directions={"model_coordinates": [[0, 0], [1, 0], [0.3, 0.8]]},
                 checkpoints=[{"path": "runs/fedavg.pt"}, {"path": "runs/fedsam.pt"}, {"path": "runs/fedasam.pt"}])
    ax = Figure().add_subplot()
    mark_models(ax, plane)
    assert [t.get_text() for t in ax.texts] == ["fedavg", "fedsam", "fedasam"]
    assert len(ax.lines) == 3 and ax.lines[2].get_xydata().tolist() == [[0.3, 0.8]]


def test_curve_has_a_stderr_band():
    ax = Figure().add_subplot()
    line = draw_curve_1d(ax, curve())
    assert len(ax.collections) == 1  # the +-2 s.e. band
    assert np.array_equal(line.get_xdata(), curve().xcoordinates)


def test_figures_are_written_as_png_and_pdf(tmp_path):
    files = plot_surfaces({"FedAvg": bowl(4.0), "FedASAM": bowl(0.5)}, tmp_path / "cmp", kind="3d")
    assert [f.name for f in files] == ["cmp.png", "cmp.pdf"] and all(f.stat().st_size > 1000 for f in files)
    written = write_figures({"a": bowl(1.0)}, tmp_path / "all", kinds=("contour",), log_scale=True)
    assert sorted(f.name for f in written if f.suffix == ".png") == [
        "train_acc_heatmap.png", "train_loss_contour.png", "train_loss_stderr_heatmap.png"]
    curves = write_figures({"line": curve()}, tmp_path / "line")
    assert {f.name for f in curves} == {"train_loss_curve.png", "train_loss_curve.pdf", "train_acc_curve.png", "train_acc_curve.pdf"}


def test_refusals_are_clear(tmp_path):
    negative = bowl(1.0)
    negative.values["train_loss"][0, 0] = -1.0
    with pytest.raises(ConfigError, match="no logarithm"):
        plot_surfaces({"n": negative}, tmp_path / "x", log_scale=True)
    with pytest.raises(ConfigError, match="1-D curves and 2-D surfaces"):
        plot_surfaces({"a": bowl(1.0), "b": curve()}, tmp_path / "x")
    with pytest.raises(ConfigError, match="kind must be one of"):
        plot_surfaces({"a": bowl(1.0)}, tmp_path / "x", kind="wireframe")
    with pytest.raises(ConfigError, match="no 'test_loss'"):
        plot_surfaces({"a": bowl(1.0)}, tmp_path / "x", key="test_loss")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("vmax", "log_scale", "match"),
    [
        (float("nan"), False, r"vmax \(--vmax\) must be a finite number, got nan"),
        (float("inf"), False, r"vmax \(--vmax\) must be a finite number, got inf"),
        ("2", False, r"vmax \(--vmax\) must be a finite number, got '2'"),
        (0.2, False, r"vmax \(--vmax\) 0.2 is at or below the lowest train loss of the surfaces \(0.2; they span 0.2 .. 8.2\)"),
        (-1.0, True, r"vmax \(--vmax\) -1 is at or below the lowest log10 train loss .* \(in log10 units"),
    ],
)
def test_a_vmax_that_cannot_scale_the_colours_is_refused_before_any_figure(tmp_path, vmax, log_scale, match):
    surfaces = {"flat": bowl(0.5), "sharp": bowl(4.0)}  # losses 0.2 .. 8.2
    with pytest.raises(ConfigError, match=match):
        write_figures(surfaces, tmp_path / "figs", log_scale=log_scale, vmax=vmax)
    with pytest.raises(ConfigError, match=match):
        plot_surfaces(surfaces, tmp_path / "one", kind="heatmap", log_scale=log_scale, vmax=vmax)
    assert not list(tmp_path.iterdir())


def test_a_vmax_inside_the_values_clips_them_on_every_kind(tmp_path):
    written = write_figures({"flat": bowl(0.5), "sharp": bowl(4.0)}, tmp_path, vmax=1.0)
    assert len(written) == 10 and all(f.stat().st_size > 1000 for f in written)


def test_titles_from_file_names_render_whatever_bytes_they_hold(tmp_path):
    # os.listdir gives b"\xff" as "\udcff"; "$...$" would be parsed as mathtext ("\frac" without arguments fails)
    names = {"run\udcff": bowl(0.5), "a$\\frac$b": bowl(4.0)}
    for kind in ("3d", "contour", "heatmap"):
        assert plot_surfaces(names, tmp_path / kind, kind=kind)[0].read_bytes()[:4] == b"\x89PNG"
    assert plot_surfaces({"x\ud800y": curve()}, tmp_path / "line")[0].stat().st_size > 1000
