"""``landscape flatness``: every flatness measure of finished runs' final models, their gaps, and which measure explains accuracy."""

from __future__ import annotations

from pathlib import Path

import click

from fedlandscape_cli._common import device_option, friendly_errors, progress_printer, quiet_option, seed_option
from landscape.settings import MEASURES, HessianSettings, MeasureSettings

DEFAULTS = MeasureSettings()


@click.command("flatness")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for flatness.json, table.md and correlations.md.")
@click.option("--measures", default="all", show_default=True, metavar="LIST", help="Comma-separated, or all: " + ",".join(MEASURES) + ".")
@click.option("--samples", type=click.IntRange(min=1), default=128, show_default=True, help="Fixed seeded training subset every measure is taken on.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Samples per pass (memory only).")
@click.option("--train-examples", type=click.IntRange(min=1), default=2048, show_default=True, help="Seeded training subset of the train accuracy (the gap's).")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.tol, show_default=True, help="Relative residual tolerance of the top eigenvalues.")
@click.option("--trace-matvecs", type=click.IntRange(min=3), default=DEFAULTS.trace_matvecs, show_default=True, help="Hutch++ products of the trace.")
@seed_option()
@device_option()
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch.")
@quiet_option
@friendly_errors
def flatness(runs: tuple[Path, ...], out: Path, measures: str, samples: int, batch_size: int, train_examples: int, tol: float,
             trace_matvecs: int, seed: int, device: str, threads: int | None, quiet: bool) -> None:
    """Which flatness measure explains accuracy across RUNS (run folders, or folders holding them, e.g. OUT/runs of a reproduction).

    \b
    Example:
        $ landscape flatness runs/quick/runs --out figures/sharpness/quick --threads 1
        fedavg alpha=0 seed=0: test 52.08%, gap +1.20, lambda_max 36.9 (120 s)
        ...
        No measure explains test accuracy here (none is significantly anti-correlated with it at 5 %).
    """
    import torch

    from landscape.report.flatness import find_runs, flatness_report

    if threads is not None:
        torch.set_num_threads(threads)
    names = MEASURES if measures.strip() == "all" else tuple(m.strip() for m in measures.split(",") if m.strip())
    hessian = HessianSettings(num_examples=samples, batch_size=batch_size, tol=tol, seed=seed, device=device)
    settings = MeasureSettings(measures=names, tol=tol, trace_matvecs=trace_matvecs)

    def say(row: dict) -> None:
        if quiet:
            return
        click.echo(f"{row['label']}: test {100 * row['accuracy']:.2f}%, gap {100 * row['gap']:+.2f}, "
                   f"lambda_max {row.get('lambda_max', float('nan')):.4g} ({row['seconds']:.0f} s)", err=True)

    flatness_report(find_runs(runs), out, hessian=hessian, measures=settings, train_examples=train_examples, on_model=say,
                    progress=progress_printer(quiet))
    click.echo((out / "correlations.md").read_text().strip().splitlines()[-1])
    if not quiet:
        click.echo(f"wrote {out / 'flatness.json'}, {out / 'table.md'}", err=True)
