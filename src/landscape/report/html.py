"""The report page: one self-contained ``report.html`` (figures as base64 PNG, results, claims, settings, versions, device, timings, commands).

:func:`render_report` is pure: a :class:`ReportPage` in, an HTML string out, every text escaped with
:func:`html.escape`, no script, no stylesheet or image from outside the file, so the page reads offline and in
any browser. The results table is ``results.md``'s own table (:func:`markdown_table`), so the page and the
Markdown never disagree; the claims are rendered through the fields of
:class:`~landscape.report.claims.Claim` (``text``, ``verdict``, ``reason``, ``evidence``).
:func:`report_page` gathers a page from the files of a figures folder and :func:`write_report` writes it
atomically (:func:`fedtrain.io.atomic_write_text`).
"""

from __future__ import annotations

import base64
import html
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fedtrain.io import atomic_write_text

__all__ = ["ClaimLike", "Figure", "ReportPage", "render_report", "markdown_table", "swa_collection_note",
           "report_versions", "report_page", "write_report", "figures_with_report", "FIGURE_CAPTIONS", "REPORT_NAME"]

REPORT_NAME = "report.html"

# What each figure of landscape.plots.paper.draw_figures shows; a figure not listed is captioned by its name.
FIGURE_CAPTIONS: dict[str, str] = {
    "surfaces_3d": "Training-loss surfaces along two random filter-normalised directions (the paper's Fig. 1).",
    "sharpness": "Top Hessian eigenvalue λ_1 and the ratio λ_1/λ_k of every final model.",
    "spectral_density": "Hessian eigenvalue density (stochastic Lanczos quadrature).",
    "accuracy": "Test accuracy during training.",
}


class ClaimLike(Protocol):
    """The fields of :class:`~landscape.report.claims.Claim` the page renders, and no other."""

    text: str
    verdict: str
    reason: str
    evidence: str


@dataclass(frozen=True)
class Figure:
    """One embedded figure: its name (the file stem), a caption and the PNG bytes."""

    name: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class ReportPage:
    """Everything the page shows; each part may be empty (then its section says so or is left out).

    Attributes:
        title: the page's title and first heading.
        results_markdown: ``results.md`` (its table becomes an HTML table, its other lines paragraphs).
        claims: the verdicts, rendered through ``text``, ``verdict``, ``reason``, ``evidence``.
        notes: statements printed next to the results (how SWA collects, how clients were drawn).
        figures: the figures, in order.
        settings: the exact settings (``plan.json`` of a reproduction), shown as JSON.
        versions: library versions and the git commit.
        device: where the work ran (``device_used`` of ``reproduce.json``).
        timings: the invocations of ``reproduce.json`` (each with its ``stages``).
        commands: the shell commands that rerun the work.
    """

    title: str
    results_markdown: str = ""
    claims: Sequence[ClaimLike] = ()
    notes: Sequence[str] = ()
    figures: Sequence[Figure] = ()
    settings: Mapping[str, Any] | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    device: Mapping[str, Any] | None = None
    timings: Sequence[Mapping[str, Any]] = ()
    commands: Sequence[str] = ()


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
figure { margin: 1.5em 0; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.verdict { font-weight: bold; white-space: nowrap; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def markdown_table(markdown: str) -> tuple[list[list[str]], list[str]]:
    """The first pipe table of ``markdown`` as rows of cells (header first, the ``|---|`` line dropped), and its other non-empty lines.

    >>> markdown_table("| a | b |\\n|---|---|\\n| 1 | 2 |\\n\\nA note.")
    ([['a', 'b'], ['1', '2']], ['A note.'])
    """
    rows: list[list[str]] = []
    other: list[str] = []
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = [cell.strip() for cell in stripped[1:-1].split("|")]
            if not all(set(cell) <= set("-: ") and cell for cell in cells):
                rows.append(cells)
        elif stripped:
            other.append(stripped)
    return rows, other


def _table(rows: Sequence[Sequence[object]], *, header: bool = True) -> str:
    if not rows:
        return ""
    out = ["<table>"]
    for i, row in enumerate(rows):
        tag = "th" if header and i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{_e(cell)}</{tag}>" for cell in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _results(page: ReportPage) -> str:
    rows, other = markdown_table(page.results_markdown)
    if not rows:
        return "<p>No results table.</p>"
    # Markdown emphasis is not rendered: the cells are text, escaped
    return "\n".join([_table([[cell.replace("**", "") for cell in row] for row in rows]),
                      *(f"<p>{_e(line)}</p>" for line in other)])


def _claims(claims: Sequence[ClaimLike]) -> str:
    if not claims:
        return "<p>No claims were checked.</p>"
    out = ["<table>", "<tr><th>claim (Caldarola et al., ECCV 2022)</th><th>verdict</th><th>reason</th><th>evidence</th></tr>"]
    for claim in claims:
        out.append(f'<tr><td>{_e(claim.text)}</td><td class="verdict">{_e(claim.verdict)}</td>'
                   f"<td>{_e(claim.reason)}</td><td>{_e(claim.evidence)}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _figures(figures: Sequence[Figure]) -> str:
    if not figures:
        return "<p>No figures.</p>"
    return "\n".join(
        f'<figure id="fig-{_e(f.name)}"><img alt="{_e(f.name)}" src="data:image/png;base64,'
        f'{base64.b64encode(f.png).decode("ascii")}"><figcaption>{_e(f.name)}: {_e(f.caption)}</figcaption></figure>'
        for f in figures)


def _timings(invocations: Sequence[Mapping[str, Any]]) -> str:
    if not invocations:
        return "<p>No timings recorded.</p>"
    rows: list[list[object]] = [["invocation", "stage kind", "computed", "skipped", "seconds"]]
    for number, invocation in enumerate(invocations, start=1):
        kinds: dict[str, list[float]] = {}
        skipped: dict[str, int] = {}
        for stage in invocation.get("stages", []):
            kind = str(stage.get("stage"))
            if stage.get("skipped"):
                skipped[kind] = skipped.get(kind, 0) + 1
                kinds.setdefault(kind, [])
            else:
                kinds.setdefault(kind, []).append(float(stage.get("seconds", 0.0)))
        for kind, seconds in kinds.items():
            rows.append([number, kind, len(seconds), skipped.get(kind, 0), f"{sum(seconds):.1f}"])
        total = sum(sum(s) for s in kinds.values())
        rows.append([number, "all", sum(len(s) for s in kinds.values()), sum(skipped.values()), f"{total:.1f}"])
    return _table(rows)


def _mapping(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "<p>Not recorded.</p>"
    return _table([[key, value] for key, value in values.items()], header=False)


def render_report(page: ReportPage) -> str:
    """The page as one HTML document; the same page gives the same string.

    Args:
        page: what to show.

    Returns:
        A complete HTML5 document with no external resource and no script.
    """
    settings = "<p>Not recorded.</p>" if page.settings is None else (
        f"<pre>{_e(json.dumps(page.settings, indent=2, sort_keys=True, default=str))}</pre>")
    commands = "<p>Not recorded.</p>" if not page.commands else f"<pre>{_e(chr(10).join(page.commands))}</pre>"
    notes = "".join(f"<p>{_e(note)}</p>" for note in page.notes)
    sections = [
        ("results", "Results", _results(page) + notes),
        ("claims", "Claims", _claims(page.claims)),
        ("figures", "Figures", _figures(page.figures)),
        ("settings", "Settings", settings),
        ("versions", "Versions", _mapping(page.versions)),
        ("device", "Device", _mapping(page.device)),
        ("timings", "Timings", _timings(page.timings)),
        ("commands", "Commands to rerun", commands),
    ]
    body = "\n".join(f'<section id="{sid}"><h2>{_e(title)}</h2>\n{content}\n</section>' for sid, title, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(page.title)}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{_e(page.title)}</h1>\n{body}\n</body>\n</html>\n")


def swa_collection_note(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the runs' SWA collection point and client sampling were, next to their results (empty without SWA runs).

    Args:
        configs: the runs' ``config.json`` (:meth:`fedtrain.config.TrainConfig.to_dict`).

    Returns:
        One sentence per setting that differs from the FedSAM reference code or follows it.
    """
    notes = []
    collect = sorted({str(c.get("swa_collect", "end")) for c in configs if c.get("swa")})
    if collect == ["end"]:
        notes.append("SWA collection point: these runs average the global model at the end of each cycle "
                     "(--swa-collect end, as in SWA), unlike the FedSAM reference code, which collects after the "
                     "cycle's highest-learning-rate round; --swa-collect reference follows the reference code.")
    elif collect == ["reference"]:
        notes.append("SWA collection point: after each cycle's highest-learning-rate round, as the FedSAM reference "
                     "code collects (--swa-collect reference); the toolkit's default collects at the cycle's end.")
    elif collect:
        notes.append(f"SWA collection point: the runs differ ({', '.join(collect)}); see each run's config.json.")
    sampling = sorted({str(c.get("client_sampling", "toolkit")) for c in configs})
    if sampling == ["reference"]:
        notes.append("Client sampling: each round's clients drawn as the FedSAM reference code draws them "
                     "(NumPy seeded with the round index; --client-sampling reference).")
    elif sampling == ["toolkit"]:
        notes.append("Client sampling: the toolkit's draw, seeded by the run's seed and the round "
                     "(--client-sampling reference would follow the FedSAM code's client sequence).")
    return notes


def report_versions() -> dict[str, str]:
    """The library versions of :func:`fedtrain.checkpoint.library_versions` and the git commit of the source tree (``unknown`` outside git)."""
    from fedtrain.checkpoint import library_versions

    versions = library_versions()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                                text=True, timeout=10, check=False)
        versions["git_commit"] = commit.stdout.strip() if commit.returncode == 0 and commit.stdout.strip() else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).resolve().parent,
                               capture_output=True, text=True, timeout=10, check=False)
        if commit.returncode == 0 and dirty.returncode == 0 and dirty.stdout.strip():
            versions["git_commit"] += " (with uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        versions["git_commit"] = "unknown"
    return versions


def report_page(folder: str | Path, *, title: str, written: Mapping[str, Sequence[str | Path]], claims: Sequence[ClaimLike],
                configs: Sequence[Mapping[str, Any]] = (), settings: Mapping[str, Any] | None = None,
                device: Mapping[str, Any] | None = None, timings: Sequence[Mapping[str, Any]] = (),
                commands: Sequence[str] = ()) -> ReportPage:
    """The page of a figures folder: its PNG figures (from ``written``), ``results.md``, the claims and the records given.

    Args:
        folder: the figures folder (holds ``results.md``).
        title: the page title.
        written: figure name -> files written (:func:`landscape.plots.paper.draw_figures`); the PNGs are embedded.
        claims: the verdicts.
        configs: the runs' configs, for :func:`swa_collection_note`.
        settings, device, timings, commands: as in :class:`ReportPage`.

    Returns:
        The page; versions are this process's (:func:`report_versions`).
    """
    folder = Path(folder)
    figures = [Figure(name, FIGURE_CAPTIONS.get(name, name.replace("_", " ")), Path(file).read_bytes())
               for name, files in written.items() for file in files if Path(file).suffix == ".png"]
    results = folder / "results.md"
    return ReportPage(
        title=title, results_markdown=results.read_text() if results.is_file() else "", claims=list(claims),
        notes=swa_collection_note(configs), figures=figures, settings=settings, versions=report_versions(),
        device=device, timings=list(timings), commands=list(commands))


def write_report(path: str | Path, page: ReportPage) -> list[Path]:
    """Write :func:`render_report` of ``page`` to ``path`` atomically; returns the file (in a list, like the figure writers)."""
    atomic_write_text(path, render_report(page))
    return [Path(path)]


def figures_with_report(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                        commands: Sequence[str] = ()) -> dict[str, list[Path]]:
    """``landscape figures``: the figures and results table of the runs at or below ``paths`` and their ``report.html``.

    The page's settings are each run's configuration, its device the runs' recorded device, its timings the
    runs' training wall times, and its claims :func:`~landscape.report.claims.check_claims` of their table.

    Args:
        paths: run folders or folders of runs (:func:`landscape.plots.paper.collect_runs`).
        out: the figures folder.
        commands: the commands that redraw it.

    Returns:
        Figure name -> files written, ``report`` included.

    Raises:
        ConfigError: no finished run found.
    """
    from landscape.plots.paper import collect_planes, collect_runs, draw_figures, results_table
    from landscape.report.claims import check_claims

    records = collect_runs(paths)
    written = draw_figures(records, collect_planes(paths), out)
    devices = {json.dumps(r.summary.get("device_used"), sort_keys=True): r.summary.get("device_used") for r in records}
    device = next(iter(devices.values())) if len(devices) == 1 else {str(r.path): r.summary.get("device_used") for r in records}
    page = report_page(
        out, title=f"Figures of {len(records)} training runs", written=written,
        claims=check_claims(results_table(records)), configs=[r.config.to_dict() for r in records],
        settings={str(r.path): r.config.to_dict() for r in records}, device=device,
        timings=[{"stages": [{"stage": "train", "what": str(r.path), "skipped": False,
                              "seconds": float(r.summary.get("wall_seconds") or 0.0)} for r in records]}],
        commands=commands)
    written["report"] = write_report(Path(out) / REPORT_NAME, page)
    return written
