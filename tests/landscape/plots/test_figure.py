"""The one figure helper: plain Figure objects, PNG and/or PDF by suffix, atomic writes, no pyplot anywhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from matplotlib.figure import Figure

from landscape.plots.figure import figure_paths, new_figure, save_figure


def test_new_figure_is_sized_per_panel_with_the_asked_layout():
    figure = new_figure(3, 2, 2.0, 1.5)
    assert isinstance(figure, Figure)
    assert tuple(figure.get_size_inches()) == pytest.approx((6.0, 3.0))
    assert figure.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
    assert new_figure(layout=None).get_layout_engine() is None


def test_paths_follow_the_suffix_and_a_dotted_name_gets_both_formats(tmp_path):
    assert figure_paths(tmp_path / "a.png") == [tmp_path / "a.png"]
    assert figure_paths(tmp_path / "a.PDF") == [tmp_path / "a.PDF"]
    assert figure_paths(tmp_path / "alpha-0.05") == [tmp_path / "alpha-0.05.png", tmp_path / "alpha-0.05.pdf"]


def test_save_writes_png_and_pdf_and_leaves_no_temporary_files(tmp_path):
    figure = new_figure()
    figure.subplots().plot([0, 1], [1, 0])
    written = save_figure(figure, tmp_path / "line")
    assert written == [tmp_path / "line.png", tmp_path / "line.pdf"]
    assert (tmp_path / "line.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "line.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.pdf", "line.png"]


def test_a_failing_render_keeps_the_previous_file(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    figure = new_figure()

    def broken(*args, **kwargs):
        raise RuntimeError("render failed")

    figure.savefig = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="render failed"):
        save_figure(figure, target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_drawing_every_figure_never_imports_pyplot_or_switches_the_backend(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import matplotlib
        backend = matplotlib.rcParams._get_backend_or_none()
        import numpy as np
        from landscape.plots import figure, paper, partition, spectrum, surface
        from landscape.surface.record import Surface
        x = np.linspace(-1, 1, 3)
        loss = np.add.outer(x**2, x**2) + 0.1
        values = {{"train_loss": loss, "train_loss_stderr": 0 * loss, "train_acc": loss, "train_acc_stderr": 0 * loss}}
        surface.write_figures({{"a": Surface(x, x, values, np.ones(loss.shape, bool), {{"kind": "random"}})}}, {str(tmp_path)!r})
        grid = np.linspace(0, 1, 5).tolist()
        spectrum.plot_spectral_density({{"eigenvalues": [1.0], "density": {{"grid": grid, "values": grid}}}}, {str(tmp_path / "esd.png")!r})
        assert "matplotlib.pyplot" not in sys.modules, "a figure imported pyplot"
        assert matplotlib.rcParams._get_backend_or_none() == backend, "a figure switched the backend"
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "esd.png").is_file() and (tmp_path / "train_loss_3d.png").is_file()


def test_display_text_makes_any_name_renderable():
    from landscape.plots.figure import display_text

    assert display_text("fedasam-swa") == "fedasam-swa" and display_text("λ_max") == "λ_max"
    assert display_text("run\udcff.pt") == "run\ufffd.pt"  # an undecodable byte, as os.fsdecode keeps it
    assert "\ufffd" in display_text("\ud800x") and display_text("\ud800x").endswith("x")  # any other lone surrogate
    assert display_text("a$b$") == "a\\$b\\$"  # literal dollars, never mathtext
    display_text("run\udcff.pt").encode("utf-8")  # what a PDF or a font needs
