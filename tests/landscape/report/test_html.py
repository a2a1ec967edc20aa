"""report.html: one self-contained page (figures embedded, tables, claims, settings, versions, timings, commands), checked in headless Chromium."""

import base64
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from landscape.report.html import (Figure, ReportPage, markdown_table, render_report, report_page, swa_collection_note,
                                   write_report)

RESULTS_MD = """| split | algorithm | seeds | test accuracy (%) | λ_1 |
|---|---|---|---|---|
| α = 0 | FedAvg | 3 | 57.5 ± 1.2 | 36.904 |
| α = 0 | FedASAM | 3 | 51.4 ± 0.8 | 15.078 |

Accuracy: mean test accuracy over each run's last evaluations.
"""


@dataclass(frozen=True)
class _Claim:
    """A claim with exactly the fields the page renders (landscape.report.claims.Claim's agreed interface)."""

    text: str
    verdict: str
    evidence: str
    reason: str = ""


CLAIMS = [
    _Claim("At α = 0, FedASAM reaches a lower λ_max than FedAvg.", "held", "FedASAM 15.1 ± 0.4 vs FedAvg 36.9 ± 2.0"),
    _Claim("FedSAM beats FedAvg <b>at α = 0</b> & more.", "inconclusive", "FedSAM 49% vs FedAvg 57.5%",
           "accuracy still rising, +4.1 points over the last 20% of rounds"),
]


def _png(colour: tuple[float, float, float], width: int = 300, height: int = 150) -> bytes:
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.broadcast_to(np.array(colour, dtype=np.float64), (height, width, 3)).copy(), format="png")
    return buffer.getvalue()


RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


def _page(**changes) -> ReportPage:
    values = dict(
        title="Reproduction quick (3 seeds)", results_markdown=RESULTS_MD, claims=CLAIMS,
        notes=["SWA collection point: end of each cycle."],
        figures=[Figure("accuracy", "Test accuracy during training.", _png(RED)),
                 Figure("sharpness", "λ_1 of every final model.", _png(BLUE))],
        settings={"preset": "quick", "seeds": 3, "settings": {"train_overrides": {"eval_examples": 5000}}},
        versions={"torch": "2.13.0", "python": "3.11", "fedlandscape": "0.1", "git_commit": "abc123"},
        device={"device": "cpu", "threads": 2},
        timings=[{"stages": [{"stage": "train", "skipped": False, "seconds": 100.0},
                             {"stage": "train", "skipped": True, "seconds": 0.0},
                             {"stage": "hessian", "skipped": False, "seconds": 20.5}]}],
        commands=["landscape reproduce --preset quick --seeds 3 --out runs/quick"],
    )
    return ReportPage(**{**values, **changes})


def test_the_page_holds_every_part_and_escapes_every_text():
    text = render_report(_page())
    for part in ("<h1>Reproduction quick (3 seeds)</h1>", "<th>test accuracy (%)</th>", "<td>57.5 ± 1.2</td>",
                 "Accuracy: mean test accuracy", "SWA collection point: end of each cycle.",
                 '<td class="verdict">inconclusive</td>', "accuracy still rising, +4.1 points", "FedASAM 15.1 ± 0.4",
                 "&quot;eval_examples&quot;: 5000", "<td>git_commit</td><td>abc123</td>", "<td>cpu</td>",
                 "<td>1</td><td>train</td><td>1</td><td>1</td><td>100.0</td>", "<td>1</td><td>all</td><td>2</td><td>1</td><td>120.5</td>",
                 "landscape reproduce --preset quick --seeds 3 --out runs/quick"):
        assert part in text, part
    assert "FedSAM beats FedAvg &lt;b&gt;at α = 0&lt;/b&gt; &amp; more." in text and "<b>" not in text
    assert text == render_report(_page())  # pure: same page, same string


def test_the_page_needs_nothing_outside_the_file():
    text = render_report(_page())
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    sources = re.findall(r'<img alt="([^"]+)" src="([^"]+)"', text)
    assert [name for name, _ in sources] == ["accuracy", "sharpness"]
    for _, src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_parts_say_so():
    text = render_report(ReportPage(title="empty"))
    for section in ("results", "claims", "figures", "settings", "versions", "device", "timings", "commands"):
        assert f'<section id="{section}">' in text
    assert "No results table." in text and "No claims were checked." in text and "No figures." in text
    assert text.count("Not recorded.") == 4 and "No timings recorded." in text


def test_markdown_table_reads_the_results_table_and_keeps_the_notes():
    rows, other = markdown_table(RESULTS_MD)
    assert rows[0] == ["split", "algorithm", "seeds", "test accuracy (%)", "λ_1"] and len(rows) == 3
    assert rows[2][1] == "FedASAM" and other == ["Accuracy: mean test accuracy over each run's last evaluations."]


def test_the_swa_note_states_the_collection_point_and_the_client_sampling():
    notes = swa_collection_note([{"swa": True, "swa_collect": "end"}, {"swa": False, "swa_collect": "reference"}])
    assert "--swa-collect end" in notes[0] and "unlike the FedSAM reference code" in notes[0]
    assert "--swa-collect reference" in notes[0] and "--client-sampling reference" in notes[1]
    assert "as the FedSAM reference code collects" in swa_collection_note([{"swa": True, "swa_collect": "reference"}])[0]
    assert swa_collection_note([{"swa": False, "client_sampling": "reference"}]) == [
        "Client sampling: each round's clients drawn as the FedSAM reference code draws them "
        "(NumPy seeded with the round index; --client-sampling reference)."]


def test_report_page_embeds_the_pngs_of_a_figures_folder_and_write_report_writes_it(tmp_path):
    (tmp_path / "results.md").write_text(RESULTS_MD)
    (tmp_path / "accuracy.png").write_bytes(_png(RED))
    (tmp_path / "accuracy.pdf").write_bytes(b"%PDF-1.4")
    page = report_page(tmp_path, title="t", written={"accuracy": [tmp_path / "accuracy.png", tmp_path / "accuracy.pdf"],
                                                     "results": [tmp_path / "results.md"]},
                       claims=CLAIMS, configs=[{"swa": True, "swa_collect": "end"}], commands=["landscape figures x"])
    assert [f.name for f in page.figures] == ["accuracy"] and page.figures[0].png == _png(RED)
    assert page.results_markdown == RESULTS_MD and "git_commit" in page.versions and "torch" in page.versions
    assert "--swa-collect end" in page.notes[0]
    assert write_report(tmp_path / "report.html", page) == [tmp_path / "report.html"]
    assert (tmp_path / "report.html").read_text() == render_report(page)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left behind


# --- in a real browser ---------------------------------------------------------------------------------


def _chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


def _browser(*args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    return subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--force-device-scale-factor=1", *args], capture_output=True, text=True, timeout=120)


needs_chromium = pytest.mark.skipif(_chromium() is None and not os.environ.get("CI"),
                                    reason="Chromium is not installed (apt-get install -y chromium); CI installs it and runs this")


@needs_chromium
def test_chromium_loads_the_page_and_finds_the_figures_and_the_table(tmp_path):
    assert _chromium() is not None, "CI must install Chromium (make test installs it when run as root)"
    page_file = tmp_path / "report.html"
    write_report(page_file, _page())
    dom = _browser("--dump-dom", page_file.as_uri())
    assert dom.returncode == 0, dom.stderr
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', dom.stdout)
    assert [name for name, _ in images] == ["accuracy", "sharpness"]
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for _, data in images)
    table = re.search(r'<section id="results">.*?<table>(.*?)</table>', dom.stdout, re.S)
    assert table is not None and "<th>algorithm</th>" in table.group(1) and "<td>57.5 ± 1.2</td>" in table.group(1)
    assert '<td class="verdict">held</td>' in dom.stdout

    # Chromium decoded both embedded PNGs: their colours fill their 300 x 150 boxes in a screenshot of the page
    shot = tmp_path / "page.png"
    taken = _browser(f"--screenshot={shot}", "--window-size=1200,4000", page_file.as_uri())
    assert taken.returncode == 0 and shot.is_file(), taken.stderr
    import matplotlib.image

    pixels = np.round(matplotlib.image.imread(shot)[..., :3] * 255).astype(int)
    for colour in (RED, BLUE):
        rgb = np.round(np.array(colour) * 255).astype(int)
        assert int(np.all(np.abs(pixels - rgb) <= 2, axis=-1).sum()) >= 0.95 * 300 * 150, colour


def test_versions_name_the_libraries_and_the_commit_or_say_unknown(monkeypatch):
    import landscape.report.html as page_module
    from landscape.report.html import report_versions

    versions = report_versions()
    assert {"fedlandscape", "torch", "numpy", "python", "torch_threads", "git_commit"} <= set(versions)
    assert re.fullmatch(r"[0-9a-f]{40}( \(with uncommitted changes\))?|unknown", versions["git_commit"])

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(page_module.subprocess, "run", no_git)
    assert report_versions()["git_commit"] == "unknown"
