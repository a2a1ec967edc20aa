"""``landscape reproduce``: the paper's sharp-versus-flat comparison end to end, resumable, with figures."""

from __future__ import annotations

from pathlib import Path

import click

from fedlandscape_cli._common import data_dir_option, device_option, friendly_errors, progress_printer, quiet_option
from fedtrain.config import CLIENT_SAMPLING_SCHEMES, SWA_COLLECT_MODES
from landscape.report.presets import REPRODUCE_PRESETS


@click.command("reproduce")
@click.option("--preset", type=click.Choice(list(REPRODUCE_PRESETS)), default="quick", show_default=True,
              help="quick: real Fashion-MNIST, <= 20 min on 2 CPU cores; paper-cifar10: the paper's setting "
                   "(CIFAR-10 from --data-dir, for a GPU); smoke: a one-minute pipeline check on synthetic data (not a result).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/reproduce"), show_default=True,
              help="Reproduction folder; rerunning with the same preset continues where it stopped and redraws.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Number of seeds (0..N-1), each a full set of runs.")
@click.option("--swa-collect", type=click.Choice(SWA_COLLECT_MODES), default=None,
              help="Where the SWA runs collect: end (the cycle's end, the presets' setting) or reference (after the "
                   "cycle's highest-lr round, as the FedSAM code). Part of the plan.")
@click.option("--client-sampling", type=click.Choice(CLIENT_SAMPLING_SCHEMES), default=None,
              help="How each round draws its clients: toolkit (the presets' setting) or reference (the FedSAM code's "
                   "np.random.seed(round) draw). Part of the plan.")
@click.option("--methods", default=None, metavar="NAME[,NAME...]",
              help="Train these methods on every split instead of the preset's FedAvg/FedSAM/FedASAM (+SWA): built-in names "
                   "(fedavg, fedsam, fedasam, mofedsam, fedgamma, fedlesam, fedgloss, fedspeed) or package.module:Class; name+swa adds "
                   "the run with server-side SWA. Part of the plan.")
@click.option("--splits", default=None, metavar="NAME[,NAME...]",
              help="Only these of the preset's splits (heterogeneous, homogeneous). Part of the plan.")
@data_dir_option
@device_option(help="Where every stage computes: auto (a GPU when there is one), cpu, cuda or cuda:N. Not part of the "
                    "plan: a reproduction may be continued on another machine.")
@quiet_option
@friendly_errors
def reproduce(preset: str, out: Path, seeds: int, swa_collect: str | None, client_sampling: str | None, methods: str | None,
              splits: str | None, data_dir: Path | None, device: str, quiet: bool) -> None:
    """Train FedAvg, FedSAM, FedASAM (+SWA) on a heterogeneous and a homogeneous split, analyse every final model, draw the figures.

    Progress: one line on stderr for the whole job (stage k of n, the running run's round or the analysis's
    products / grid points, elapsed, ETA from what each kind of stage took so far); --quiet for none.

    \b
    Example:
        $ landscape reproduce --preset quick --out runs/quick
        [train] heterogeneous fedavg seed 0 ...
        ...
        [figures] runs/quick/figures: accuracy, claims, plane_heterogeneous-seed0, results, sharpness, ...
    """
    from landscape.report.reproduce import reproduce as run_reproduction

    printer = progress_printer(quiet)
    # On a terminal the stage lines go above the live progress line; in a log they stay on stdout, as before.
    log = (lambda line: None) if quiet else printer.note if printer.tty else click.echo
    overrides = {k: v for k, v in (("swa_collect", swa_collect), ("client_sampling", client_sampling)) if v is not None}
    record = run_reproduction(preset, out, seeds=seeds, data_dir=data_dir, device=device, log=log, progress=printer,
                              train_overrides=overrides, methods=_names(methods), splits=_names(splits))
    click.echo(f"done in {record['total_seconds']:.0f} s; results: {out / 'figures' / 'results.md'}; "
               f"the whole report, one self-contained page: {out / 'figures' / 'report.html'}")
    click.echo((out / "figures" / "results.md").read_text())
    click.echo((out / "figures" / "claims.md").read_text())


def _names(option: str | None) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``; no option: ``()``."""
    return () if option is None else tuple(name.strip() for name in option.split(",") if name.strip())
