"""``landscape train``: parse flags into a TrainConfig, call ``fedtrain.run.train``, print the summary."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from fedlandscape_cli._common import data_dir_option, friendly_errors, progress_printer, quiet_option
from fedtrain.config import ALGORITHMS, ENGINES, DATASETS, MODEL_NAMES, PARTITION_SCHEMES, PRESETS, SWA_COLLECT_MODES, COHORT_MODES, MAX_THREADS
from fedtrain.config import CLIENT_SAMPLING_SCHEMES

_FLOAT0 = click.FloatRange(min=0)


class _AlgorithmType(click.ParamType):
    """A built-in method's name (:data:`fedtrain.config.ALGORITHMS`) or an import path ``package.module:Class``."""

    name = "algorithm"

    def convert(self, value, param, ctx):
        if value in ALGORITHMS or ":" in value:
            return value
        self.fail(f"{value!r} is not one of {', '.join(map(repr, ALGORITHMS))}, nor an import path package.module:Class.", param, ctx)
_PATH_IN = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.option("--preset", type=click.Choice(tuple(PRESETS)), default=None, help="Start from a preset; flags and --config override it.")
@click.option("--config", "config_file", type=_PATH_IN, default=None, help="TOML or YAML file of settings (keys as the flags, e.g. swa_start).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run directory to create (refused if it exists, unless --overwrite).")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="Continue the run in this directory from its latest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace a previous run in --out.")
@click.option("--init-from", type=_PATH_IN, default=None, help="Branch this --swa run off a checkpoint of the same run without SWA (round <= SWA start).")
@click.option("--dataset", type=click.Choice(DATASETS), default=None, help="Dataset.")
@data_dir_option
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None, help="Model architecture.")
@click.option("--partition", type=click.Choice(PARTITION_SCHEMES), default=None, help="Partition scheme.")
@click.option("--alpha", type=_FLOAT0, default=None, help="Dirichlet concentration (0 = one class per client).")
@click.option("--num-clients", type=click.IntRange(min=1), default=None, help="Number of clients N.")
@click.option("--samples-per-client", type=click.IntRange(min=1), default=None, help="Samples per client.")
@click.option("--algorithm", type=_AlgorithmType(), default=None, metavar="NAME|MODULE:CLASS",
              help=f"The federated method: {', '.join(ALGORITHMS)}, or your own as package.module:Class (README: Bring your own method).")
@click.option("--method-arg", "method_args", multiple=True, metavar="KEY=VALUE",
              help="A setting of the method (repeatable), e.g. --method-arg alpha=0.1 for mofedsam; a config file's method_args: too.")
@click.option("--rho", type=_FLOAT0, default=None, help="SAM/ASAM radius (default 0.1 FedSAM, 0.7 FedASAM).")
@click.option("--eta", type=_FLOAT0, default=None, help="ASAM offset eta in T = |w| + eta (default 0.2).")
@click.option("--swa/--no-swa", default=None, help="Server-side SWA with a cyclical client lr.")
@click.option("--swa-start", type=_FLOAT0, default=None, help="SWA start: fraction of rounds if < 1, else a round (default 0.75).")
@click.option("--swa-c", type=click.IntRange(min=1), default=None, help="SWA cycle length in rounds (default 10).")
@click.option("--swa-lr", type=_FLOAT0, default=None, help="Lowest lr of the SWA cycle (default 1e-4).")
@click.option("--swa-collect", type=click.Choice(SWA_COLLECT_MODES), default=None, help="Collect at the cycle's end (SWA) or after its highest-lr round (FedSAM code).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Number of rounds.")
@click.option("--clients-per-round", type=click.IntRange(min=1), default=None, help="Clients sampled per round K.")
@click.option("--client-sampling", type=click.Choice(CLIENT_SAMPLING_SCHEMES), default=None,
              help="How each round draws its clients: toolkit (from the seed and round; the default) or reference "
                   "(the FedSAM code's np.random.seed(round) draw: the same clients for every seed).")
@click.option("--local-epochs", type=click.IntRange(min=1), default=None, help="Local epochs E.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Local batch size B.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Client learning rate.")
@click.option("--weight-decay", type=_FLOAT0, default=None, help="Client weight decay.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=None, help="Client SGD momentum.")
@click.option("--server-lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Server learning rate (1 = FedAvg).")
@click.option("--server-momentum", type=click.FloatRange(0, 1, max_open=True), default=None, help="Server momentum (> 0 = FedAvgM).")
@click.option("--eval-every", type=click.IntRange(min=1), default=None, help="Evaluate every this many rounds.")
@click.option("--eval-last", type=click.IntRange(min=0), default=None, help="Also evaluate at each of the last this many rounds.")
@click.option("--eval-examples", type=click.IntRange(min=1), default=None, help="Test images per evaluation (default: all).")
@click.option("--validation", type=click.IntRange(min=0), default=None,
              help="Hold out this many training examples (seeded, before the partition: no client trains on them) and "
                   "evaluate on them instead of the test split, which is then not read (default 0: the test split).")
@click.option("--last-k", type=click.IntRange(min=1), default=None, help="Summary accuracy = mean of the last k evaluations.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=None, help="Write latest.pt every this many rounds (it is also written at evaluations).")
@click.option("--checkpoint-round", "checkpoint_rounds", type=click.IntRange(min=1), multiple=True, help="Keep a checkpoint after this round (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed of every random choice; recorded with the result.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None, help="CPU threads for torch (default: torch's choice; on --resume the run's recorded count).")
@click.option("--device", default=None, metavar="auto|cpu|cuda|cuda:N",
              help="Where to train: auto (a GPU when there is one; the default), cpu, cuda or cuda:N. May change on --resume.")
@click.option("--deterministic/--no-deterministic", default=None,
              help="On a GPU, deterministic kernels only (slower; resumes bit-identical). No effect on CPU numbers.")
@click.option("--cohort", type=click.Choice(COHORT_MODES), default=None,
              help="How a round trains its clients: sequential (one after another), vmap (all at once with torch.func; "
                   "equal up to float32 rounding) or auto (the default: vmap on CUDA, sequential on the CPU, as measured).")
@click.option("--cohort-chunk", type=click.IntRange(min=0), default=None,
              help="With vmap: at most this many clients per vectorised computation (0, the default: as many as fit in memory).")
@click.option("--cohort-compile/--no-cohort-compile", default=None,
              help="With vmap: torch.compile the vectorised step (opt-in; compiles once per run, helps only where measured).")
@click.option("--track-sharpness", type=click.IntRange(min=1), default=None, metavar="EVERY",
              help="Log lambda_max of the global model every EVERY rounds (a multiple of --eval-every) in metrics.jsonl: "
                   "warm-started Lanczos on 128 seeded training samples; the training numbers do not change.")
@click.option("--engine", type=click.Choice(ENGINES), default="native", show_default=True,
              help="native: the rounds run in this process; flower: each client trains on a Flower node (simulation engine, Ray).")
@click.option("--num-supernodes", type=click.IntRange(min=1), default=None,
              help="With --engine flower: virtual SuperNodes, one client each (default: --num-clients).")
@click.option("--track-trace", is_flag=True, help="With --track-sharpness, also log the Hutch++ trace (30 products a check).")
@quiet_option
@friendly_errors
def train(preset, config_file, out, resume, overwrite, init_from, threads, track_sharpness, track_trace, engine, num_supernodes,
          quiet, **flags) -> None:
    """Train FedAvg / FedSAM / FedASAM / another method (+SWA) and write checkpoints, metrics and a summary.

    \b
    Example:
      $ landscape train --preset quick --algorithm fedasam --out runs/fedasam
      $ landscape train --resume runs/fedasam
      $ landscape train --preset paper-cifar10 --data-dir data --device cuda:0 --out runs/paper
      $ landscape train --preset quick --algorithm fedsam --engine flower --out runs/fedsam-flower
      $ landscape train --preset quick --algorithm mymethods:FedProx --method-arg mu=0.01 --out runs/fedprox
    """
    from fedtrain.config import resolve_config
    from fedtrain.errors import ConfigError
    from fedtrain.io import to_json
    from fedtrain.run import RunPaths, load_run_config, train as run_train
    from fedtrain.session import recorded_numerics, resume_numerics

    overrides = {k: v for k, v in flags.items() if v is not None and v != ()}
    if "method_args" in overrides:
        overrides["method_args"] = _method_args(overrides["method_args"])
    if track_sharpness is not None:
        from landscape.hessian.tracking import TRACKER_NAME
        from landscape.settings import TrackingSettings

        overrides["observers"] = {TRACKER_NAME: TrackingSettings(every=track_sharpness, trace=track_trace).to_dict()}
    elif track_trace:
        raise ConfigError("--track-trace goes with --track-sharpness EVERY.")
    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            raise ConfigError("--resume RUN_DIR continues that directory; do not also pass a different --out.")
        # What changes the floating-point results is the recorded one unless given here, with a warning.
        config, threads, warnings = resume_numerics(
            load_run_config(resume), recorded_numerics(RunPaths(resume).latest), threads=threads,
            device=overrides.pop("device", None), deterministic=overrides.pop("deterministic", None))
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        out = resume
        if overrides or preset or config_file:
            config = resolve_config(None, None, {**config.to_dict(), **overrides})
    elif out is None:
        raise ConfigError("Pass --out RUN_DIR (a new directory for the run), or --resume RUN_DIR.")
    else:
        config = resolve_config(preset, config_file, overrides)
    if not quiet:
        click.echo(f"resolved config: {json.dumps(config.to_dict(), sort_keys=True)}", err=True)
    run_train = _engine(engine, num_supernodes) or run_train
    summary = run_train(config, out, resume=resume is not None, overwrite=overwrite, init_from=init_from,
                        progress=progress_printer(quiet), threads=threads,
                        **({"observers": observers} if (observers := _observers(config)) else {}))
    click.echo(to_json(summary))


def _method_args(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("alpha=0.1", ...)`` -> ``{"alpha": "0.1"}``; the method's Settings type each value (fedtrain.methods)."""
    from fedtrain.errors import ConfigError

    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--method-arg takes KEY=VALUE (e.g. --method-arg alpha=0.1), got {pair!r}.")
        args[key.strip()] = value.strip()
    return args


def _engine(engine: str, num_supernodes: int | None):
    """``fedtrain.flower.train_flower`` for ``--engine flower`` (``None`` for native), or a clean error without flwr."""
    from fedtrain.errors import ConfigError

    if engine == "native":
        if num_supernodes is not None:
            raise ConfigError("--num-supernodes goes with --engine flower.")
        return None
    try:
        from fedtrain.flower.server_app import train_flower
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith(("flwr", "ray")):
            raise
        raise ConfigError(f"--engine flower needs Flower ({err.name} is not installed): pip install 'fedlandscape[flower]'.") from None
    return functools.partial(train_flower, num_supernodes=num_supernodes)


def _observers(config) -> list:
    """The observers ``config.observers`` records (the sharpness tracker), built for this run or its resume."""
    from landscape.hessian.tracking import TRACKER_NAME, SharpnessTracker

    return [SharpnessTracker.for_run(config)] if TRACKER_NAME in config.observers else []
