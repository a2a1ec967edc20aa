"""``landscape figures``: paper-style figures and the results table from finished runs, without retraining."""

from __future__ import annotations

from pathlib import Path

import click

from fedlandscape_cli._common import friendly_errors, quiet_option


@click.command("figures")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("figures"), show_default=True,
              help="Folder for the figures (PNG and PDF) and results.md / results.csv.")
@quiet_option
@friendly_errors
def figures(run_dirs: tuple[Path, ...], out: Path, quiet: bool) -> None:
    """Assemble figures from training runs (folders with summary.json, their analysis/ and planes/).

    \b
    Example:
        $ landscape figures runs/quick/runs runs/quick/planes --out figures/
        wrote figures/surfaces_3d.png
        ...
    """
    from fedtrain.lock import DirectoryLock
    from landscape.plots.paper import make_figures

    with DirectoryLock(out):  # refused while another command writes --out (or a reproduction around it)
        written = make_figures(list(run_dirs), out)
    for files in [] if quiet else written.values():
        for file in files:
            click.echo(f"wrote {file}")
