"""``landscape info``: what a checkpoint, run directory, surface.npz, Hessian report or reproduction folder is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fedlandscape_cli._common import friendly_errors


@click.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (for scripts) instead of text.")
@friendly_errors
def info(path: Path, as_json: bool) -> None:
    """What PATH is, how it was made, its headline numbers and whether it is complete.

    PATH: a checkpoint or a plain state_dict (.pt), a training run directory, a surface.npz, a Hessian
    report (.json written by landscape hessian) or a reproduction folder.

    \b
    Example:
        $ landscape info runs/fedasam/checkpoints/final.pt
        checkpoint  runs/fedasam/checkpoints/final.pt  [complete]
          round 80 of 80 (final)
          ...
    """
    from fedtrain.io import to_json
    from landscape.info import describe

    summary = describe(path).to_dict()
    if as_json:
        click.echo(to_json(summary))
        return
    for line in format_info(summary):
        click.echo(line)


def format_info(summary: dict[str, Any]) -> list[str]:
    """The text of ``landscape info``: kind and path, status, then how it was made and its numbers, one key a line."""
    lines = [f"{summary['kind']}  {summary['path']}  [{'complete' if summary['complete'] else 'INCOMPLETE'}]", f"  {summary['status']}"]
    for section in ("made", "headline"):
        if summary[section]:
            lines.append(f"  {'how it was made' if section == 'made' else 'headline numbers'}:")
            lines += [f"    {key:<18} {_short(value)}" for key, value in summary[section].items()]
    return lines


def _short(value: Any) -> str:
    """One line for a value: floats to 6 significant digits, nested values as compact JSON."""
    import json

    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(_rounded(value), separators=(", ", ": "), default=str)
        return text if len(text) <= 160 else text[:157] + "..."
    return str(value)


def _rounded(value: Any) -> Any:
    """``value`` with every float inside cut to 6 significant digits (the text view; --json keeps them all)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
