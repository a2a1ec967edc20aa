"""What a file or folder of this toolkit is: each artefact kind recognised and summarised (``landscape info``).

:func:`describe` reads a checkpoint, a plain ``state_dict``, a training run directory, a ``surface.npz``, a
Hessian report (the JSON of ``landscape hessian``), a reproduction folder or a sweep folder, and returns an
:class:`ArtefactInfo`: what it is, how it was made (model, data, partition, algorithm and its settings,
round, seeds, versions, hashes), its headline numbers, and whether it is complete. Every file is read with
the toolkit's own safe readers (``weights_only=True`` checkpoints, bounded JSON); nothing is computed.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedtrain.checkpoint import Checkpoint, file_sha256, load_checkpoint
from fedtrain.errors import DataFormatError, LandscapeError
from fedtrain.io import read_json
from fedtrain.run import RunPaths
from fedtrain.run_files import read_metrics, read_run_config, read_summary
from fedtrain.sweep import PLAN_NAME, read_sweep_plan, sweep_plan_file
from landscape.hessian.analysis import read_report
from landscape.reproduction_files import read_history, read_plan

__all__ = ["ArtefactInfo", "KINDS", "describe"]

KINDS = ("checkpoint", "state_dict", "run", "surface", "hessian-report", "reproduction", "sweep")
# Settings of a run that say which method it is; the rest of its configuration is in config.json.
_METHOD_KEYS = ("algorithm", "method_args", "rho", "eta", "swa", "swa_start", "swa_c", "swa_lr", "swa_collect", "lr", "batch_size",
                "local_epochs", "weight_decay", "momentum", "server_lr", "server_momentum", "rounds", "clients_per_round")
_DATA_KEYS = ("dataset", "num_clients", "samples_per_client", "alpha", "partition")


@dataclass(frozen=True)
class ArtefactInfo:
    """The summary of one artefact.

    Attributes:
        kind: one of :data:`KINDS`.
        path: the file or folder.
        complete: whether the work that made it finished (a final checkpoint, a full grid, every run...).
        status: one line saying how far it got.
        made: how it was made (model, data, partition, algorithm and settings, round, seeds, versions, hashes).
        headline: its main numbers.
    """

    kind: str
    path: str
    complete: bool
    status: str
    made: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``landscape info --json``."""
        return {"kind": self.kind, "path": self.path, "complete": self.complete, "status": self.status,
                "made": self.made, "headline": self.headline}


def describe(path: str | os.PathLike[str]) -> ArtefactInfo:
    """Recognise the artefact at ``path`` and summarise it.

    Raises:
        DataFormatError: ``path`` is none of the kinds this toolkit writes (one paragraph listing them).
        LandscapeError: a file of a known kind that is damaged (the reader's own error).
    """
    target = Path(path)
    if not target.exists():
        raise DataFormatError(f"Nothing at {target}: no such file or folder. Check the path.")
    if target.is_dir():
        if sweep_plan_file(target) is not None:
            return _sweep(target)
        if (target / "plan.json").is_file() and (target / "runs").is_dir():
            return _reproduction(target)
        if RunPaths(target).config.is_file():
            return _run(target)
    elif target.suffix == ".npz":
        return _surface(target)
    elif target.suffix == ".json":
        data = read_json(target)
        if isinstance(data, dict) and {"eigenvalues", "hvps", "config"} <= set(data):
            return _hessian_report(target, read_report(target))
    elif zipfile.is_zipfile(target):
        return _torch_file(target)
    raise DataFormatError(
        f"{target} is not something this toolkit wrote: landscape info reads checkpoints and plain state_dicts (.pt), "
        "training run directories (with config.json), surface.npz files, Hessian reports (the JSON of landscape "
        f"hessian), reproduction folders (with plan.json and runs/) and sweep folders (with {PLAN_NAME}). Point it at one of those."
    )


def _torch_file(path: Path) -> ArtefactInfo:
    """A checkpoint of ours, or a plain state dict (the hint says how to analyse it)."""
    from fedtrain.foreign import load_state_dict_file

    try:
        return _checkpoint(load_checkpoint(path), path)
    except LandscapeError as err:
        try:
            weights = load_state_dict_file(path)
        except LandscapeError:
            raise err from None
    numel = sum(int(t.numel()) for t in weights.values())
    return ArtefactInfo(
        "state_dict", str(path), True,
        f"a plain PyTorch state_dict (not a fedlandscape checkpoint): {len(weights)} tensors, {numel:,} numbers; "
        "analyse it with --model and --dataset or --data",
        made={"sha256": file_sha256(path)},
        headline={"tensors": len(weights), "numbers": numel,
                  "first": {k: list(v.shape) for k, v in list(weights.items())[:5]}},
    )


def _checkpoint(checkpoint: Checkpoint, path: Path) -> ArtefactInfo:
    config = checkpoint.config
    rounds = config.get("rounds")
    complete = rounds is not None and checkpoint.round >= int(rounds)
    status = f"round {checkpoint.round} of {rounds}" if rounds is not None else f"round {checkpoint.round}"
    status += " (final)" if complete else ""
    if checkpoint.has_swa:
        status += f", SWA model of {checkpoint.swa_count} global models"
    made = {
        "model": {"name": checkpoint.model_name, "kwargs": checkpoint.model_kwargs},
        "dataset": checkpoint.dataset,
        "partition": _partition(checkpoint.partition),
        "method": {k: config[k] for k in _METHOD_KEYS if k in config},
        "round": checkpoint.round,
        "seed": config.get("seed"),
        "versions": checkpoint.versions,
        "sha256": file_sha256(path),
    }
    params = sum(int(t.numel()) for t in checkpoint.weights.values())
    return ArtefactInfo("checkpoint", str(path), complete, status, made,
                        {"parameters": params, "swa_count": checkpoint.swa_count, "round": checkpoint.round})


def _partition(partition: dict[str, Any] | None) -> dict[str, Any] | None:
    """The spec and hash of a checkpoint's partition, without the per-client index lists."""
    if not partition:
        return None
    return {k: v for k, v in partition.items() if not isinstance(v, (list, dict)) or k in ("spec",)}


def _run(folder: Path) -> ArtefactInfo:
    paths = RunPaths(folder)
    config = read_run_config(paths.config, error=DataFormatError).to_dict()
    metrics = read_metrics(paths.metrics) if paths.metrics.is_file() else []
    summary = read_summary(paths.summary) if paths.summary.is_file() else None
    rounds = config.get("rounds")
    done = max((int(m.get("round", 0)) for m in metrics), default=0)
    complete = summary is not None and paths.final.is_file()
    status = "complete" if complete else (f"stopped at round {done} of {rounds}, or still training "
                                          f"(continue a stopped run with landscape train --resume {folder})")
    made = {
        "model": {"name": config.get("model"), "kwargs": config.get("model_kwargs")},
        "data": {k: config[k] for k in _DATA_KEYS if k in config},
        "method": {k: config[k] for k in _METHOD_KEYS if k in config},
        "seed": config.get("seed"),
        "rounds_done": done,
        "checkpoints": sorted(p.name for p in paths.checkpoints.glob("*.pt")) if paths.checkpoints.is_dir() else [],
    }
    headline: dict[str, Any] = {}
    if summary is not None:
        headline = {k: summary[k] for k in summary if not isinstance(summary[k], (list, dict))}
    elif metrics:
        last = next((m for m in reversed(metrics) if m.get("test_accuracy") is not None), metrics[-1])
        headline = {"round": last.get("round"), "test_accuracy": last.get("test_accuracy"), "train_loss": last.get("train_loss")}
    if paths.partition.is_file():
        made["partition_sha256"] = file_sha256(paths.partition)
    analysis = folder / "analysis"
    if analysis.is_dir():
        made["analysis"] = sorted(p.name for p in analysis.iterdir())
    return ArtefactInfo("run", str(folder), complete, status, made, headline)


def _surface(path: Path) -> ArtefactInfo:
    from landscape.surface.record import load_surface

    surface = load_surface(path)
    meta = surface.metadata
    points, done = int(surface.done.size), int(surface.done.sum())
    status = (f"all {points} grid points computed" if surface.complete else
              f"partial: {done} of {points} grid points (finish with landscape plot-surface ... --resume)")
    made = {k: meta[k] for k in ("kind", "checkpoints", "model", "dataset", "seeds", "splits", "bn", "num_examples",
                                 "versions", "device_used", "foreign") if k in meta}
    made["shape"] = list(surface.shape)
    headline: dict[str, Any] = {}
    for split in surface.splits:
        loss = surface.value(split, "loss")[surface.done]
        headline[f"{split}_loss_min"] = float(loss.min())
        headline[f"{split}_loss_max"] = float(loss.max())
        centre = _centre_value(surface, split)
        if centre is not None:
            headline[f"{split}_loss_centre"] = centre
    return ArtefactInfo("surface", str(path), bool(surface.complete), status, made, headline)


def _centre_value(surface: Any, split: str) -> float | None:
    """The loss at the grid point nearest the origin (the model itself for random or Hessian directions), if computed."""
    import numpy as np

    x, y = surface.xcoordinates, surface.ycoordinates
    index = [int(np.argmin(np.abs(x)))] + ([] if y is None else [int(np.argmin(np.abs(y)))])
    if not surface.done[tuple(index)]:
        return None
    return float(surface.value(split, "loss")[tuple(index)])


def _hessian_report(path: Path, report: dict[str, Any]) -> ArtefactInfo:
    config = report.get("config", {})
    converged = report.get("converged") or []
    complete = bool(converged) and all(c is not False for c in converged) and not report.get("errors")
    status = "all eigenpairs converged" if complete else "some quantities did not converge or failed (see errors)"
    made = {k: config[k] for k in ("checkpoint", "checkpoint_sha256", "weights", "model", "dataset", "split",
                                   "num_examples", "checkpoint_round", "seeds", "backend", "top_k", "trace_method",
                                   "trace_matvecs", "density_probes", "density_steps", "versions", "foreign") if k in config}
    trace = report.get("trace")
    headline = {
        "eigenvalues": report.get("eigenvalues"),
        "ratio": report.get("ratio"),
        "trace": None if not trace else {"estimate": trace.get("estimate"), "stderr": trace.get("stderr")},
        "products": (report.get("hvps") or {}).get("total"),
        "seconds": (report.get("seconds") or {}).get("total"),
    }
    return ArtefactInfo("hessian-report", str(path), complete, status, made, headline)


def _reproduction(folder: Path) -> ArtefactInfo:
    plan = read_plan(folder / "plan.json")
    settings = plan.get("settings", {})
    seeds = int(plan.get("seeds", 1))
    planned = seeds * sum(len(settings.get("algorithms", {}).get(split, [])) for split, _ in settings.get("splits", []))
    runs = sorted(p for p in (folder / "runs").glob("*/*/seed*") if p.is_dir())
    finished = [r for r in runs if RunPaths(r).summary.is_file() and RunPaths(r).final.is_file()]
    analysed = [r for r in finished if (r / "analysis" / "hessian.json").is_file() and (r / "analysis" / "surface.npz").is_file()]
    figures = folder / "figures"
    complete = planned > 0 and len(finished) == planned and len(analysed) == planned and (figures / "results.md").is_file()
    status = "complete" if complete else (f"{len(finished)} of {planned} runs trained, {len(analysed)} analysed "
                                          f"(continue with landscape reproduce --preset {plan.get('preset')} --out {folder})")
    history = read_history(folder / "reproduce.json") if (folder / "reproduce.json").is_file() else []
    made = {"preset": plan.get("preset"), "seeds": seeds, "train_preset": settings.get("train_preset"),
            "splits": settings.get("splits"), "runs_planned": planned, "invocations": len(history)}
    headline: dict[str, Any] = {"runs_trained": len(finished), "runs_analysed": len(analysed)}
    if history:
        headline["first_invocation_seconds"] = history[0].get("total_seconds")
    if (figures / "results.md").is_file():
        headline["results"] = str(figures / "results.md")
    return ArtefactInfo("reproduction", str(folder), complete, status, made, headline)


def _sweep(folder: Path) -> ArtefactInfo:
    base, planned = read_sweep_plan(sweep_plan_file(folder))
    folders = [folder / "runs" / f"{point.name}-seed{seed}" for point, seed in planned]
    finished = sum(RunPaths(f).summary.is_file() for f in folders)
    record = read_json(folder / "sweep.json") if (folder / "sweep.json").is_file() else {}
    complete = finished == len(planned) and len(record.get("runs", [])) == len(planned)
    status = "complete" if complete else (f"{finished} of {len(planned)} runs trained (continue with landscape sweep "
                                          f"and the same settings, --out {folder})")
    made = {"preset": base.preset, "dataset": base.dataset, "rounds": base.rounds, "validation": base.validation,
            "points": len({point for point, _ in planned}), "seeds": sorted({seed for _, seed in planned}),
            "runs_planned": len(planned)}
    headline: dict[str, Any] = {"runs_trained": finished}
    for name, best in record.get("best", {}).get("per_algorithm", {}).items():
        values = " ".join(f"{k}={best[k]:g}" for k in ("rho", "eta", "lr") if best.get(k) is not None)
        headline[f"best {name}"] = f"{values}: {100 * best['mean']:.2f}% validation accuracy over {best['n']} seed(s)"
    return ArtefactInfo("sweep", str(folder), complete, status, made, headline)
