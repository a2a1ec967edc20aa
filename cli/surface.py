"""``landscape plot-surface``: loss surfaces, interpolations and model planes of checkpoints, saved and plotted."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fedlandscape_cli._common import (
    data_dir_option,
    foreign_model_options,
    foreign_spec,
    friendly_errors,
    progress_printer,
    quiet_option,
    seed_option,
)
from landscape.settings import (
    BN_MODES,
    DIRECTION_KINDS,
    EVALUATION_METHODS,
    ONE_DIM_POLICIES,
    SPLITS,
    SURFACE_PLOT_KINDS,
    WEIGHTS,
    SurfaceSettings,
)

if TYPE_CHECKING:
    from landscape.surface.record import Surface

CHECKPOINT = click.Path(exists=True, dir_okay=False, path_type=Path)
DEFAULTS = SurfaceSettings()


@click.command("plot-surface")
@click.argument("checkpoints", nargs=-1, type=CHECKPOINT)
@click.option("--directions", type=click.Choice(DIRECTION_KINDS), default=DEFAULTS.directions, show_default=True, help="Filter-normalised Gaussian directions (Li et al.) or the top-2 Hessian eigenvectors.")
@click.option("--interpolate", type=CHECKPOINT, default=None, help="Checkpoint B: plot the line from CKPT (t=0) to B (t=1).")
@click.option("--plane", type=CHECKPOINT, nargs=2, default=None, help="Checkpoints B C: plot the plane through CKPT, B and C (Garipov et al.).")
@click.option("--range", "range_", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.range, show_default=True, help="Half-width of the grid along random/Hessian directions.")
@click.option("--steps", type=click.IntRange(min=2), default=DEFAULTS.steps, show_default=True, help="Grid points per axis (odd: the centre is on the grid).")
@click.option("--dims", type=click.IntRange(1, 2), default=DEFAULTS.dims, show_default=True, help="1 (a curve) or 2 (a surface) for random/Hessian directions.")
@click.option("--margin", type=click.FloatRange(min=0), default=DEFAULTS.margin, help="Extrapolation beyond the models for --interpolate (default 0.5) and --plane (default 0.2).")
@click.option("--split", "splits", type=click.Choice(SPLITS), multiple=True, default=DEFAULTS.splits, show_default=True, help="Split(s) to evaluate; repeat for both.")
@click.option("--samples", type=click.IntRange(min=1), default=DEFAULTS.num_examples, show_default=True, help="Samples per split (a fixed seeded subset); a number >= the split size uses it all.")
@click.option("--bn", type=click.Choice(BN_MODES), default=DEFAULTS.bn, show_default=True, help="BatchNorm: frozen statistics, or recomputed on training samples at every point.")
@click.option("--weights", type=click.Choice(WEIGHTS), default=DEFAULTS.weights, show_default=True, help="Which model of the checkpoint: SWA when present (auto), SWA, or the last global model.")
@click.option("--one-dim", type=click.Choice(ONE_DIM_POLICIES), default=DEFAULTS.one_dim, show_default=True, help="Random directions on biases and norm layers: zero (Li et al.'s biasbn), copy the weights, or normalise.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, help="Samples per forward pass. Default: 64 on the CPU (fastest on 2 cores: bench/results/surface.txt); on a GPU chosen from its free memory.")
@click.option("--points-per-pass", type=click.IntRange(min=1), default=DEFAULTS.points_per_pass, help="Grid points per pass over the data; the file is saved after each such chunk. Default: 8 on the CPU; on a GPU chosen from its free memory (recorded, so --resume reuses it).")
@click.option("--method", type=click.Choice(EVALUATION_METHODS), default=DEFAULTS.method, show_default=True, help="Evaluate a chunk's points one by one (loop) or vectorised (vmap).")
@click.option("--device", default=DEFAULTS.device, show_default=True, metavar="auto|cpu|cuda|cuda:N", help="Where to evaluate: auto (a GPU when there is one), cpu, cuda or cuda:N. --resume needs the same kind of device (the CPU, or a GPU of the same model).")
@seed_option(default=DEFAULTS.seed)
@data_dir_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("surface"), show_default=True, help="Output folder for surface.npz and the figures.")
@click.option("--resume", is_flag=True, help="Finish the partial surface.npz in --out (same settings required).")
@click.option("--from", "from_files", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True, help="Re-plot saved surface.npz files (repeatable) without recomputing.")
@click.option("--plot", "kinds", type=click.Choice(SURFACE_PLOT_KINDS), multiple=True, default=SURFACE_PLOT_KINDS, show_default=True, help="2-D figure kinds (repeatable).")
@click.option("--log-scale", is_flag=True, help="Plot log10 of the loss.")
@click.option("--vmax", type=float, default=None, help="Clip the loss colour scale (and 3-D heights) at this value.")
@foreign_model_options
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes sharing each grid's points (torch.distributed: gloo on CPUs, one GPU each with NCCL); the same "
                   "numbers bit for bit; no live progress or --resume with more than 1.")
@quiet_option
@friendly_errors
def plot_surface(checkpoints: tuple[Path, ...], directions: str, interpolate: Path | None, plane: tuple[Path, Path] | None,
                 range_: float, steps: int, dims: int, margin: float | None, splits: tuple[str, ...], samples: int, bn: str,
                 weights: str, one_dim: str, batch_size: int | None, points_per_pass: int | None, method: str, device: str, seed: int,
                 data_dir: Path | None, out: Path, resume: bool, from_files: tuple[Path, ...], kinds: tuple[str, ...],
                 log_scale: bool, vmax: float | None, foreign_model: str | None, foreign_model_kwargs: str | None,
                 foreign_dataset: str | None, foreign_data: str | None, quiet: bool, nproc: int = 1) -> None:
    """Loss surface of each CKPT (one shared colour scale), or the line/plane through several, as PNG + PDF.

    Cost: every grid point is one pass over --samples per split (steps^2 points in 2-D). Progress (grid
    points done / planned, pass, ETA) goes to stderr, and after a few seconds the projected total time.
    Shorter: fewer --steps or --samples.

    Models trained elsewhere: the CKPTs may be plain state_dict files with --model and --dataset or --data
    (see `landscape hessian --help`).

    \b
    $ landscape plot-surface runs/fedavg.pt runs/fedasam.pt --steps 21 --samples 2000 --device cuda --out surf
    fedavg: random [21, 21] on {'train': 2000} samples, BatchNorm: eval (model has no BatchNorm), computed on cuda:0 -> surf/fedavg/surface.npz
    {"surfaces": [{"label": "fedavg", "file": "surf/fedavg/surface.npz", ..., "device_used": {"device": "cuda:0", ...}}], ...}
    """
    from fedtrain.errors import ConfigError
    from fedtrain.io import to_json
    from fedtrain.lock import DirectoryLock
    from landscape.surface.record import load_surface
    from landscape.plots.surface import write_figures
    from landscape.surface.api import checkpoint_labels
    from landscape.surface.distributed import surfaces_for_checkpoints_parallel

    if from_files and checkpoints:
        raise ConfigError("Pass either checkpoints to compute or --from surface files to re-plot, not both.")
    with DirectoryLock(out):  # one writer of --out, from the first surface to the last figure
        if from_files:
            labels = checkpoint_labels([f.parent if f.parent.name else f for f in from_files])
            results = {label: (file, load_surface(file)) for label, file in zip(labels, from_files)}
        else:
            settings = SurfaceSettings(
                directions=directions, range=range_, steps=steps, dims=dims, margin=margin, splits=splits, num_examples=samples,
                seed=seed, bn=bn, weights=weights, one_dim=one_dim, batch_size=batch_size, points_per_pass=points_per_pass,
                method=method, device=device,
            )
            results = surfaces_for_checkpoints_parallel(
                checkpoints, settings, nproc=nproc, out=out, interpolate=interpolate, plane=plane, data_dir=data_dir, resume=resume,
                progress=progress_printer(quiet) if nproc == 1 else None,
                foreign=foreign_spec(foreign_model, foreign_model_kwargs, foreign_dataset, foreign_data))
        figures = write_figures({label: s for label, (_, s) in results.items()}, out, kinds=kinds, log_scale=log_scale, vmax=vmax)
    summary = [_summary(label, file, surface) for label, (file, surface) in results.items()]
    for row in [] if quiet else summary:
        where = f", computed on {row['device_used']['device']}" if row["device_used"] else ""
        click.echo(f"{row['label']}: {row['kind']} {row['shape']} on {row['num_examples']} samples, BatchNorm: {row['bn']}{where} -> {row['file']}", err=True)
    click.echo(to_json({"surfaces": summary, "figures": [str(f) for f in figures]}), file=sys.stdout)


def _summary(label: str, file: Path, surface: Surface) -> dict[str, Any]:
    meta = surface.metadata
    bn = meta.get("bn", "?") + ("" if meta.get("has_batchnorm", True) else " (model has no BatchNorm)")
    row = {"label": label, "file": str(file), "kind": meta.get("kind"), "shape": list(surface.shape), "bn": bn,
           "num_examples": meta.get("num_examples"), "complete": surface.complete, "device_used": meta.get("device_used")}
    for split in surface.splits:
        loss = surface.value(split, "loss")
        row[f"{split}_loss_min"] = float(loss[surface.done].min())
        row[f"{split}_loss_max"] = float(loss[surface.done].max())
    if "model_coordinates" in meta.get("directions", {}):
        row["model_coordinates"] = meta["directions"]["model_coordinates"]
    return row
