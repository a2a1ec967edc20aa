"""``landscape hessian``: top Hessian eigenvalues, trace and eigenvalue density of a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from fedlandscape_cli._common import (
    data_dir_option,
    device_option,
    foreign_model_options,
    foreign_spec,
    friendly_errors,
    progress_printer,
    quiet_option,
    seed_option,
)
from landscape.settings import HESSIAN_BACKENDS, MEASURES, SPLITS, TRACE_METHODS, WEIGHTS, HessianSettings, MeasureSettings

DEFAULTS = HessianSettings()
MEASURE_DEFAULTS = MeasureSettings()


@click.command("hessian")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(SPLITS), default=DEFAULTS.split, show_default=True, help="Data split the loss is taken on.")
@click.option("--samples", type=click.IntRange(min=1), default=DEFAULTS.num_examples, show_default=True, help="Size of the fixed, seeded subset of the split (larger than the split: all of it).")
@click.option("--subsets", type=click.IntRange(min=1), default=DEFAULTS.subsets, show_default=True,
              help="Analyse this many disjoint seeded subsets of --samples each (the first is the one subset of --subsets 1) and "
                   "report the mean and standard error over them of the eigenvalues and the trace; the density is the first subset's.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True, help="Samples per Hessian-vector product pass (memory only; the result does not depend on it).")
@click.option("--top-k", type=click.IntRange(min=1), default=DEFAULTS.top_k, show_default=True, help="Number of top eigenvalues.")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.tol, show_default=True, help="Relative residual tolerance ||Hv - lambda v|| <= tol |lambda| of every eigenpair.")
@click.option("--max-matvecs", type=click.IntRange(min=1), default=None, help="Product budget of the eigensolver (default max(200, 40 k)).")
@click.option("--trace/--no-trace", default=DEFAULTS.trace, show_default=True, help="Estimate the trace.")
@click.option("--trace-method", type=click.Choice(TRACE_METHODS), default=DEFAULTS.trace_method, show_default=True, help="Trace estimator.")
@click.option("--trace-matvecs", type=click.IntRange(min=3), default=DEFAULTS.trace_matvecs, show_default=True, help="Product budget of the trace estimator.")
@click.option("--density/--no-density", default=DEFAULTS.density, show_default=True, help="Estimate the eigenvalue density (SLQ).")
@click.option("--density-probes", type=click.IntRange(min=1), default=DEFAULTS.density_probes, show_default=True, help="SLQ Rademacher probes.")
@click.option("--density-steps", type=click.IntRange(min=1), default=DEFAULTS.density_steps, show_default=True, help="Lanczos steps per SLQ probe.")
@seed_option()
@click.option("--weights", type=click.Choice(WEIGHTS), default=DEFAULTS.weights, show_default=True, help="Which model of the checkpoint: auto = SWA when present, else global.")
@click.option("--backend", type=click.Choice(HESSIAN_BACKENDS), default=DEFAULTS.backend, show_default=True, help="Engine; pyhessian runs the same quantities through PyHessian 0.1 for cross-checks.")
@device_option(default=DEFAULTS.device, help="Where the model, the data subset and the Lanczos vectors live: auto (a GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the JSON report here (default: stdout).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Draw the density, log scale, top eigenvalues marked (.png or .pdf).")
@click.option("--eigenvectors-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Save the top-k eigenvectors (torch file of {parameter: tensor} dicts).")
@foreign_model_options
@data_dir_option
@click.option("--measures", default=None, metavar="LIST",
              help="Also these flatness measures on the same subset, comma-separated, or all: " + ",".join(MEASURES) + ".")
@click.option("--rho", type=click.FloatRange(min=0, min_open=True), default=None, help=f"Worst-case sharpness radius (default {MEASURE_DEFAULTS.rho}).")
@click.option("--adaptive-rho", type=click.FloatRange(min=0, min_open=True), default=None, help=f"Adaptive worst-case radius, ||delta / (|w| + eta)|| <= it (default {MEASURE_DEFAULTS.adaptive_rho}).")
@click.option("--eta", type=click.FloatRange(min=0), default=None, help=f"ASAM offset in T_w = |w| + eta (default {MEASURE_DEFAULTS.eta}: invariant to rescaling layers).")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=None, help=f"Average-case sharpness: std of the Gaussian perturbation (default {MEASURE_DEFAULTS.sigma}).")
@click.option("--ascent-steps", type=click.IntRange(min=1), default=None, help=f"Gradient steps of the worst-case ascent (default {MEASURE_DEFAULTS.ascent_steps}).")
@click.option("--average-samples", type=click.IntRange(min=1), default=None, help=f"Antithetic pairs of the average-case estimate (default {MEASURE_DEFAULTS.average_samples}).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes sharing the products (torch.distributed: gloo on CPUs, one GPU each with NCCL); same numbers up to "
                   "float64 summation order; no live progress or --measures with more than 1.")
@quiet_option
@friendly_errors
def hessian(checkpoint: Path, split: str, samples: int, batch_size: int, top_k: int, tol: float, max_matvecs: int | None,
            trace: bool, trace_method: str, trace_matvecs: int, density: bool, density_probes: int, density_steps: int,
            seed: int, weights: str, backend: str, device: str, out: Path | None, plot: Path | None,
            eigenvectors_out: Path | None, foreign_model: str | None, foreign_model_kwargs: str | None,
            foreign_dataset: str | None, foreign_data: str | None, data_dir: Path | None, quiet: bool, measures: str | None = None,
            nproc: int = 1, subsets: int = 1, **measure_options: float | int | None) -> None:
    """Top-k Hessian eigenvalues, trace and eigenvalue density of CHECKPOINT's model.

    Cost: every Hessian-vector product is one pass over --samples. The defaults (2,048 samples, top-5 with
    at most 200 products, Hutch++ with 60, SLQ 10 x 80 = 800) make up to about 1,060 products: minutes on
    a GPU, tens of minutes on a CPU. Progress (products done / planned, ETA) goes to stderr, and after a
    few seconds the projected total time. Shorter: --samples 512, --density-probes 4 --density-steps 40
    (or --no-density), --trace-matvecs 30 (or --no-trace), a smaller --top-k.

    A model trained elsewhere: CHECKPOINT may be a plain state_dict file (torch.save(model.state_dict(), f))
    with --model (a built-in name or package.module:factory) and --dataset NAME or --data package.module:loader.

    \b
    Example:
        $ landscape hessian run/ckpt.pt --samples 512 --density-probes 4 --out h.json --plot esd.png
        $ landscape hessian run/ckpt.pt --nproc 2 --out h.json       # products shared by 2 processes
        hessian of run/ckpt.pt (swa weights, train split, 512 samples, backend fedlandscape, BN eval, on cpu)
          lambda_1 ..  lambda_5   6.4506  5.8016  5.4516  4.9134  3.7205  (all converged)
          ...
    """
    from fedtrain.errors import ConfigError
    from fedtrain.io import to_json, write_json
    from landscape.hessian.distributed import analyze_checkpoint_parallel

    if plot is not None and not density:
        raise ConfigError("--plot draws the eigenvalue density; drop --no-density or --plot.")
    settings = HessianSettings(
        split=split, num_examples=samples, batch_size=batch_size, top_k=top_k, tol=tol, max_matvecs=max_matvecs,
        trace=trace, trace_method=trace_method, trace_matvecs=trace_matvecs, density=density, density_probes=density_probes,
        density_steps=density_steps, seed=seed, weights=weights, backend=backend, device=device, subsets=subsets,
    )
    measure_settings = _measure_settings(measures, {"tol": tol, "trace_matvecs": trace_matvecs, "max_matvecs": max_matvecs},
                                         measure_options)
    foreign = foreign_spec(foreign_model, foreign_model_kwargs, foreign_dataset, foreign_data)
    report = analyze_checkpoint_parallel(checkpoint, settings, nproc=nproc, data_dir=data_dir, eigenvectors_out=eigenvectors_out,
                                         progress=progress_printer(quiet) if nproc == 1 else None, measures=measure_settings,
                                         foreign=foreign)
    result = report.to_dict()
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    for line in format_table(result):
        say(line)
    if out is None:
        click.echo(to_json(result))
    else:
        write_json(out, result)
        say(f"wrote {out}")
    if plot is not None:
        from landscape.plots.spectrum import plot_spectral_density

        for written in plot_spectral_density(result, plot, title=checkpoint.name):
            say(f"wrote {written}")


def format_table(result: dict) -> list[str]:
    """The small human-readable summary printed to stderr."""
    config = result["config"]
    subsets = result.get("subsets")  # over several disjoint subsets: their size, and mean +- standard error
    samples = f"{subsets['count']} disjoint subsets of {subsets['num_examples']}" if subsets else config["num_examples"]
    lines = [f"hessian of {config['checkpoint']} ({config['weights']} weights, {config['split']} split, "
             f"{samples} samples, backend {config['backend']}, BN {config['bn_mode']}, on {_where(config)})"]
    stderrs = result.get("eigenvalues_stderr") or [None] * len(result["eigenvalues"])
    values = "  ".join(f"{v:.6g}" + ("" if se is None else f" +- {se:.2g}") for v, se in zip(result["eigenvalues"], stderrs))
    unconverged = [i + 1 for i, c in enumerate(result["converged"]) if c is False]
    status = "all converged" if not unconverged else f"NOT converged: lambda_{unconverged}"
    lines.append(f"  top-{len(result['eigenvalues'])} eigenvalues  {values}  ({status})")
    if result["ratio"] is not None:
        lines.append(f"  lambda_1 / lambda_k   {result['ratio']:.4g}")
    if result["trace"]:
        t = result["trace"]
        stderr = "n/a" if t["stderr"] is None else f"{t['stderr']:.4g}"
        lines.append(f"  trace                 {t['estimate']:.6g} +- {stderr} ({t['method']}, {t['num_matvecs']} products)")
        if t.get("subset_stderr") is not None:
            lines.append(f"  trace over subsets    +- {t['subset_stderr']:.4g} (standard error of the mean over {t['subsets']} subsets)")
    measures = result.get("measures")
    for name, value in (measures or {}).get("values", {}).items():
        stderr = measures["stderr"].get(name)
        lines.append(f"  {name:<26} {value:.6g}" + ("" if stderr is None else f" +- {stderr:.2g}"))
    for name, message in result.get("errors", {}).items():
        lines.append(f"  {name}: failed in this backend: {message}")
    lines.append(f"  {result['hvps']['total']} Hessian-vector products, {result['seconds']['total']:.1f} s")
    return lines


def _where(config: dict) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu``: the device the analysis ran on."""
    used = config.get("device_used") or {}
    device = used.get("device", "cpu")
    return f"{device} ({used['name']})" if device.startswith("cuda") and used.get("name") else device


def _measure_settings(measures: str | None, shared: dict, options: dict) -> "MeasureSettings | None":
    """The ``MeasureSettings`` of ``--measures`` and its options (``None`` without ``--measures``).

    ``shared`` are the Hessian options that set the measures' eigensolvers and trace too (``--tol``,
    ``--trace-matvecs``, ``--max-matvecs`` when given): one option, one meaning.

    Raises:
        ConfigError: a measure option without ``--measures``, or invalid settings.
    """
    from fedtrain.errors import ConfigError

    given = {name: value for name, value in options.items() if value is not None}
    if measures is None:
        if given:
            raise ConfigError(f"--{next(iter(given)).replace('_', '-')} sets a flatness measure: add --measures (e.g. --measures all).")
        return None
    names = MEASURES if measures.strip() == "all" else tuple(m.strip() for m in measures.split(",") if m.strip())
    return MeasureSettings(measures=names, **{k: v for k, v in shared.items() if v is not None}, **given)
