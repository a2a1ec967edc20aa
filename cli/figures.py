"""``landscape figures``: paper-style figures and the results table from finished runs, without retraining."""

from __future__ import annotations

from pathlib import Path

import click

from fedlandscape_cli._common import friendly_errors, quiet_option


@click.command("figures")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("figures"), show_default=True,
              help="Folder for the figures (PNG and PDF), results.md / results.csv and report.html.")
@quiet_option
@friendly_errors
def figures(run_dirs: tuple[Path, ...], out: Path, quiet: bool) -> None:
    """Assemble figures from training runs (folders with summary.json, their analysis/ and planes/), and report.html.

    \b
    Example:
        $ landscape figures runs/quick/runs runs/quick/planes --out figures/
        wrote figures/surfaces_3d.png
        ...
    """
    import shlex

    from fedtrain.lock import DirectoryLock
    from landscape.report.html import figures_with_report

    command = shlex.join(["landscape", "figures", *map(str, run_dirs), "--out", str(out)])
    with DirectoryLock(out):  # refused while another command writes --out (or a reproduction around it)
        written = figures_with_report(list(run_dirs), out, commands=[command])
    for files in [] if quiet else written.values():
        for file in files:
            click.echo(f"wrote {file}")
