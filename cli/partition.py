"""``landscape partition``: build a federated split of a dataset, print its summary, save the artifact and plot."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from fedlandscape_cli._common import data_dir_option, friendly_errors, seed_option
from fedtrain.config import DATASETS, PARTITION_SCHEMES


@click.command("partition")
@click.option("--dataset", type=click.Choice(DATASETS), default="fashion-mnist", show_default=True, help="Dataset whose training split is partitioned.")
@data_dir_option
@click.option("--scheme", type=click.Choice(PARTITION_SCHEMES), default="dirichlet", show_default=True,
              help="dirichlet: Hsu et al. per-client Dir(alpha*p), equal sizes (FedSAM's splits); iid; "
                   "dirichlet-class: each class split over clients, unequal sizes (Flower/NIID-Bench convention).")
@click.option("--alpha", type=click.FloatRange(min=0), default=None, help="Dirichlet concentration; 0 = one class per client (dirichlet only).")
@click.option("--num-clients", type=click.IntRange(min=1), default=100, show_default=True, help="Number of clients.")
@click.option("--samples-per-client", type=click.IntRange(min=1), default=None, help="Client size (default: training-split size // clients).")
@seed_option()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the partition artifact (JSON) here.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Draw per-client label distributions (PNG/PDF by suffix; both when none).")
@friendly_errors
def partition(dataset: str, data_dir: Path | None, scheme: str, alpha: float | None, num_clients: int,
              samples_per_client: int | None, seed: int, out: Path | None, plot: Path | None) -> None:
    """Split a dataset's training set over federated clients.

    \b
    Example:
        $ landscape partition --dataset fashion-mnist --alpha 0 --num-clients 100 --out p.json --plot p.png
        partition dirichlet alpha=0 of fashion-mnist: 100 clients, 60000 samples, hash c0e31f3549824522
          classes per client   mean 1.00  min 1  max 1
          ...
    """
    from fedtrain.errors import ConfigError
    from fedtrain.lock import file_lock
    from fedtrain.partition import build_partition, save_partition

    if scheme != "iid" and alpha is None:
        raise ConfigError(f"Scheme {scheme!r} needs --alpha (e.g. --alpha 0 for one class per client, 100 for near-iid).")
    part = build_partition(dataset, scheme=scheme, num_clients=num_clients, alpha=alpha, seed=seed,
                           samples_per_client=samples_per_client, data_dir=data_dir)
    summary = part.summary()
    alpha_text = "" if part.alpha is None else f" alpha={part.alpha:g}"
    click.echo(f"partition {scheme}{alpha_text} of {dataset}: {summary['num_clients']} clients, "
               f"{summary['num_samples']} samples, seed {seed}, hash {part.hash}")
    for key, label in (("classes_per_client", "classes per client"), ("samples_per_client", "samples per client")):
        s = summary[key]
        click.echo(f"  {label:<20} mean {s['mean']:.2f}  min {s['min']}  max {s['max']}")
    click.echo(f"  {'effective classes':<20} mean {summary['effective_classes_per_client']:.2f}")
    with contextlib.ExitStack() as locks:  # two partitions written to the same files would mix them
        for target in (t for t in (out, plot) if t is not None):
            locks.enter_context(file_lock(target))
        if out is not None:
            save_partition(part, out)
            click.echo(f"wrote {out}")
        if plot is not None:
            from landscape.plots.partition import plot_label_distribution

            for written in plot_label_distribution(part, plot):
                click.echo(f"wrote {written}")
