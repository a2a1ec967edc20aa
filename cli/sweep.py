"""``landscape sweep``: tune rho (and eta, lr) with short seeded runs scored on a validation split, resumable, with a table and a plot."""

from __future__ import annotations

from pathlib import Path

import click

from fedlandscape_cli._common import data_dir_option, device_option, friendly_errors, progress_printer, quiet_option
from fedtrain.config import DATASETS, MAX_THREADS, MODEL_NAMES, PRESETS


def _numbers(text: str | None, flag: str) -> tuple[float, ...]:
    """``"0.01,0.05"`` -> ``(0.01, 0.05)``; ``None`` -> ``()``; an empty text -> ``()`` (the library names it)."""
    from fedtrain.errors import ConfigError

    if text is None:
        return ()
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes numbers separated by commas (e.g. {flag} 0.01,0.05,0.1), got {text!r}.") from None


@click.command("sweep")
@click.option("--preset", type=click.Choice(tuple(PRESETS)), default=None, help="Start every run from a preset; flags and --config override it.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="TOML or YAML file of the base training settings (as `landscape train --config`).")
@click.option("--algorithm", "algorithms", default="fedsam", show_default=True, metavar="NAMES",
              help="Algorithms to tune, comma-separated: fedavg (one point per lr, a reference), fedsam, fedasam.")
@click.option("--rho", default=None, metavar="LIST", help="Radii of FedSAM/FedASAM, comma-separated, e.g. 0.01,0.02,0.05,0.1,0.2.")
@click.option("--eta", default=None, metavar="LIST", help="FedASAM's offsets eta, comma-separated (default: the base config's eta).")
@click.option("--lr", default=None, metavar="LIST", help="Client learning rates, comma-separated (default: the base config's lr).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Seeds per point (0..N-1), each a full run.")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Rounds of every run (short runs: the sweep's budget).")
@click.option("--validation", type=click.IntRange(min=1), default=None,
              help="Training examples held out as the validation split every run is scored on (required unless the "
                   "config sets it); the test split is never read.")
@click.option("--dataset", type=click.Choice(DATASETS), default=None, help="Dataset (default: the preset's).")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None, help="Model (default: the preset's).")
@click.option("--eval-every", type=click.IntRange(min=1), default=None, help="Evaluate every this many rounds.")
@click.option("--last-k", type=click.IntRange(min=1), default=None, help="A run's score: the mean of its last k evaluations.")
@click.option("--eval-examples", type=click.IntRange(min=1), default=None,
              help="Evaluate on a seeded subset of this many validation examples (default: all of them; evaluation "
                   "dominates a short run's cost).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Sweep folder; rerunning continues it (finished runs skipped), a new grid extends it.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None, help="CPU threads for torch in every run.")
@data_dir_option
@device_option()
@quiet_option
@friendly_errors
def sweep(preset, config_file, algorithms, rho, eta, lr, seeds, rounds, validation, dataset, model, eval_every, last_k,
          eval_examples, out, threads, data_dir, device, quiet) -> None:
    """Train a grid of short seeded runs (rho x eta x lr per algorithm), score each on a validation split, report the best.

    Every run is an ordinary run directory under OUT/runs/. A run's score is the mean of its last k
    evaluations on the held-out training examples; a point's, the mean over seeds with the spread. Writes
    OUT/sweep.json, OUT/sweep.md and OUT/sweep.png/.pdf (accuracy vs rho, error bars over seeds).

    \b
    Example:
        $ landscape sweep --preset quick --algorithm fedsam --rho 0.01,0.02,0.05,0.1,0.2 --rounds 40 \\
              --validation 5000 --threads 1 --out runs/sweep-fedsam
        [sweep] run 1/5 fedsam rho=0.01 lr=0.05 seed 0 ...
        ...
        best fedsam: rho=RHO lr=0.05: ACCURACY % (1 seed)
    """
    from fedtrain.config import resolve_config
    from fedtrain.lock import DirectoryLock
    from fedtrain.sweep import SweepGrid, sweep as run_sweep
    from landscape.plots.sweep import plot_sweep

    overrides = {k: v for k, v in dict(rounds=rounds, validation=validation, dataset=dataset, model=model, eval_every=eval_every,
                                        last_k=last_k, eval_examples=eval_examples, device=device,
                                        data_dir=None if data_dir is None else str(data_dir)).items() if v is not None}
    base = resolve_config(preset, config_file, overrides)
    grid = SweepGrid(algorithms=tuple(a.strip() for a in algorithms.split(",") if a.strip()), rhos=_numbers(rho, "--rho"),
                     etas=_numbers(eta, "--eta"), lrs=_numbers(lr, "--lr"), seeds=tuple(range(seeds)))
    printer = progress_printer(quiet)
    # On a terminal the run lines go above the live progress line; in a log they stay on stdout, as reproduce's.
    log = (lambda line: None) if quiet else printer.note if printer.tty else click.echo
    with DirectoryLock(out):  # one writer of --out, from the first run to the figure
        record = run_sweep(base, grid, out, threads=threads, progress=printer, log=log)
        figures = plot_sweep(record, out / "sweep")
    click.echo((out / "sweep.md").read_text())
    for name, point in record["best"]["per_algorithm"].items():
        spread = "" if point["std"] is None else f" ± {100 * point['std']:.2f}"
        label = " ".join(f"{k}={point[k]:g}" for k in ("rho", "eta", "lr") if point[k] is not None)
        click.echo(f"best {name}: {label}: {100 * point['mean']:.2f}{spread} % ({point['n']} seed{'s' if point['n'] > 1 else ''})")
    if not quiet:
        click.echo(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'}, {', '.join(str(f) for f in figures)}", err=True)
