"""``landscape clients``: per-client and pooled Hessians, client drift and the drift plane of federated checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from fedlandscape_cli._common import data_dir_option, device_option, friendly_errors, progress_printer, quiet_option, seed_option
from fedtrain.config import MAX_THREADS
from landscape.federated.settings import ClientSettings
from landscape.settings import WEIGHTS

DEFAULTS = ClientSettings()


@click.command("clients")
@click.argument("checkpoints", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for <name>.json, the plane files and the figures.")
@click.option("--name", "names", multiple=True, help="Name of each checkpoint's results, in order (default: algorithm and split, e.g. fedsam-alpha0).")
@click.option("--from", "saved", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Saved <name>.json results to draw with the new ones (repeatable).")
@click.option("--clients", type=click.IntRange(min=1), default=DEFAULTS.clients, show_default=True, help="Clients analysed, a seeded sample of the run's clients.")
@click.option("--all-clients", is_flag=True, default=False, help="Analyse every client (overrides --clients).")
@click.option("--samples-per-client", type=click.IntRange(min=1), default=DEFAULTS.samples_per_client, show_default=True, help="Samples of each client in its Hessians, a seeded subset (more than it has: all).")
@click.option("--top-k", type=click.IntRange(min=1), default=DEFAULTS.top_k, show_default=True, help="Top eigenvalues of every Hessian.")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.tol, show_default=True, help="Relative residual tolerance of every eigenpair.")
@click.option("--max-matvecs", type=click.IntRange(min=1), default=DEFAULTS.max_matvecs, show_default=True, help="Product budget of each eigensolve.")
@click.option("--trace/--no-trace", default=DEFAULTS.trace, show_default=True, help="Estimate every Hessian's trace (Hutch++).")
@click.option("--trace-matvecs", type=click.IntRange(min=3), default=DEFAULTS.trace_matvecs, show_default=True, help="Hutch++ products per trace.")
@click.option("--local/--no-local", default=DEFAULTS.local, show_default=True, help="Also analyse each client's model after the run's own local update (and the drift).")
@click.option("--local-epochs", type=click.IntRange(min=1), default=DEFAULTS.local_epochs, show_default=True, help="Local epochs of that update.")
@click.option("--plane/--no-plane", default=DEFAULTS.plane, show_default=True, help="The loss on the plane through the global model and two client models.")
@click.option("--plane-clients", type=click.IntRange(min=0), nargs=2, default=None, help="The plane's two clients (default: the analysed pair with the most divergent updates).")
@click.option("--plane-steps", type=click.IntRange(min=2), default=DEFAULTS.plane_steps, show_default=True, help="Grid points per axis of the plane.")
@click.option("--plane-margin", type=click.FloatRange(min=0), default=DEFAULTS.plane_margin, show_default=True, help="Widening of the models' bounding box in the plane.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True, help="Samples per product pass (memory only).")
@seed_option(help="Seed of the client sample, the per-client samples and the estimators; recorded with the result.")
@click.option("--weights", type=click.Choice(WEIGHTS), default=DEFAULTS.weights, show_default=True, help="Which model of the checkpoint is the global model: auto = SWA when present.")
@device_option(default=DEFAULTS.device)
@data_dir_option
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None, help="CPU threads for torch (recorded in the results).")
@quiet_option
@friendly_errors
def clients(checkpoints: tuple[Path, ...], out: Path, names: tuple[str, ...], saved: tuple[Path, ...], clients: int,
            all_clients: bool, samples_per_client: int, top_k: int, tol: float, max_matvecs: int, trace: bool,
            trace_matvecs: int, local: bool, local_epochs: int, plane: bool, plane_clients: tuple[int, int] | None,
            plane_steps: int, plane_margin: float, batch_size: int, seed: int, weights: str, device: str,
            data_dir: Path | None, threads: int | None, quiet: bool) -> None:
    """Per-client curvature of federated CHECKPOINTS: each client's Hessian at the global model and at its own model.

    For a seeded sample of clients (--clients, default 20; --all-clients for every one) and a seeded subset
    of each client's samples (--samples-per-client), the top eigenvalues and trace of the client's loss
    Hessian at the global model and after one local epoch of the run's own client update; the pooled
    Hessian on the union of the same samples and the local-global gap; the client drift (update norms,
    cosines with the mean update); the loss on the plane through the global model and two client models.
    Writes OUT/<name>.json, OUT/<name>-plane-*.npz and the figures clients_lambda, clients_local_global,
    clients_drift and <name>-plane (.png and .pdf).

    \b
    Example:
        $ landscape clients runs/fedavg/checkpoints/final.pt runs/fedsam/checkpoints/final.pt --out figures/clients --threads 1
        fedavg-alpha0: 20 of 100 clients x 32 samples; lambda_max at w: clients mean 73.2, pooled 45.3 (gap 28.0) ...
    """
    import torch

    from fedtrain.errors import ConfigError
    from fedtrain.io import read_json
    from fedtrain.lock import DirectoryLock
    from fedtrain.outpaths import safe_name
    from landscape.federated.api import analyze_clients, write_clients
    from landscape.plots.clients import result_name, write_client_figures

    if not checkpoints and not saved:
        raise ConfigError("Pass at least one checkpoint (or saved results with --from).")
    if names and len(names) != len(checkpoints):
        raise ConfigError(f"--name was given {len(names)} times for {len(checkpoints)} checkpoints; give one per checkpoint or none.")
    if threads is not None:
        torch.set_num_threads(threads)
    settings = ClientSettings(
        clients=None if all_clients else clients, samples_per_client=samples_per_client, top_k=top_k, tol=tol,
        max_matvecs=max_matvecs, trace=trace, trace_matvecs=trace_matvecs, local=local, local_epochs=local_epochs,
        plane=plane, plane_clients=plane_clients or None, plane_steps=plane_steps, plane_margin=plane_margin,
        batch_size=batch_size, seed=seed, weights=weights, device=device,
    )
    results, planes = {}, {}
    for path in saved:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != "fedlandscape.clients":
            raise ConfigError(f"{path} is not a `landscape clients` result (no format 'fedlandscape.clients'). Pass the <name>.json it wrote.")
        results[path.stem] = data
        planes[path.stem] = saved_planes(path, data)
    printer = progress_printer(quiet)

    def say(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    with DirectoryLock(out):  # one writer of --out, from the first analysis to the last figure
        for index, path in enumerate(checkpoints):
            report = analyze_clients(path, settings, data_dir=data_dir, progress=printer)
            name = safe_name(names[index] if names else result_name(report.to_dict(), taken=set(results)))
            for written in write_clients(report, out, name):
                say(f"wrote {written}")
            results[name], planes[name] = report.to_dict(), report.planes
            say(summary_line(name, results[name]))
        for files in write_client_figures(results, out, planes).values():
            for written in files:
                say(f"wrote {written}")


def summary_line(name: str, data: dict) -> str:
    """One line per checkpoint: clients, samples, lambda_max at the global and the local models, the gap, the cost."""
    gap, cost, settings = data["gap"], data["cost"], data["settings"]
    samples = "all" if settings["samples_per_client"] is None else settings["samples_per_client"]
    line = (f"{name}: {cost['clients']} of {data['checkpoint']['num_clients']} clients x {samples} samples; lambda_max at the "
            f"global model: clients' mean {gap['weighted_mean_local']:.4g}, pooled {gap['pooled']:.4g} (gap {gap['gap']:.4g})")
    if "local_gap" in data:
        line += f"; at the clients' own models: mean {data['local_gap']['weighted_mean_local']:.4g}"
    if "drift" in data:
        line += f"; update agreement {data['drift']['agreement']:.3f}"
    return line + (f"; {cost['seconds']['total']:.0f} s, {cost['hvps']['per_client_mean']:.0f} products and "
                   f"{cost['seconds']['per_client_mean']:.1f} s per client")


def saved_planes(path: Path, data: dict) -> dict:
    """The plane surfaces a saved result names (``plane.files``, next to its JSON); none when it has no plane."""
    from landscape.surface.record import load_surface

    files = (data.get("plane") or {}).get("files") or {}
    return {name: load_surface(path.parent / file) for name, file in files.items()}
