"""Tuning sweeps: a grid of short seeded training runs scored on a validation split (never the test split), resumable, with the best setting.

A sweep trains one ordinary run per (grid point, seed) under ``OUT/runs/<point>-seed<s>/`` from one base
:class:`~fedtrain.config.TrainConfig` that holds out a validation split (``validation > 0``,
:mod:`fedtrain.holdout`), so every accuracy it compares is measured on training examples no client trained
on, and the test split is never read. A grid point is an algorithm with a radius ``rho`` (FedSAM, FedASAM),
an ``eta`` (FedASAM only) and a client learning rate ``lr``; FedAvg, which has neither, is one point per lr.

Score of a run: the mean of its last ``last_k`` evaluations (``summary.json``'s ``last_k_mean_accuracy``).
Score of a point: the mean over its seeds, with the standard deviation (``ddof=1``) and the standard error.
:data:`fedtrain.sweep_results.SELECTION_RULE` picks the best point of each algorithm and of the whole sweep.

Files (``OUT/``): ``sweep-plan.json`` (the base settings and every run planned so far), ``sweep.json`` (the
settings, every run's score, every point's mean and spread, the best points), ``sweep.md`` (the table), and,
drawn by :mod:`landscape.plots.sweep`, ``sweep.png``/``sweep.pdf``.

Rerunning a sweep into the same ``OUT`` skips the finished runs, resumes the interrupted one from its last
checkpoint (bit-identical, :func:`fedtrain.run.train`) and trains the missing ones. A grid with other points
or seeds *extends* the sweep (its runs join the planned ones, and the files report all of them); other base
settings (rounds, validation size, preset values...) are refused, since the runs would not be comparable.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedtrain.config import ALGORITHMS, TrainConfig, check_seed, shown_value
from fedtrain.convergence import convergence_of
from fedtrain.errors import ConfigError, LandscapeError
from fedtrain.io import atomic_write_text, read_json, write_json
from fedtrain.lock import holds_lock
from fedtrain.outpaths import inside, safe_name
from fedtrain.progress import Progress, ProgressCallback, report
from fedtrain.data import load_dataset
from fedtrain.run import RunPaths, run_inputs, train
from fedtrain.run_files import read_metrics, read_summary
from fedtrain.sweep_results import SELECTION_RULE, best_points, point_label, summarise, sweep_table

__all__ = ["SWEEP_FORMAT", "PLAN_NAME", "SweepPoint", "SweepGrid", "sweep", "read_sweep_plan", "sweep_plan_file"]

SWEEP_FORMAT = "fedlandscape.sweep"
PLAN_FORMAT = "fedlandscape.sweep-plan"
PLAN_NAME = "sweep-plan.json"  # not plan.json: that names a reproduction folder (landscape info tells them apart)
_LEGACY_PLAN_NAME = "plan.json"  # what sweeps started before the plan had its own name wrote
# Settings a grid point sets per run, and settings that say where or how a run computes, not what it computes
# (as fedtrain.run lets a resume change them): neither is part of a sweep's base.
_POINT_FIELDS = ("algorithm", "rho", "eta", "lr", "seed")
_HOW_FIELDS = ("data_dir", "device", "deterministic", "cohort", "cohort_chunk", "cohort_compile")


@dataclass(frozen=True)
class SweepPoint:
    """One setting of the grid: an algorithm with its radius, ASAM offset and client learning rate.

    ``rho`` is ``None`` for FedAvg (no perturbation) and ``eta`` is ``None`` except for FedASAM.
    """

    algorithm: str
    rho: float | None
    eta: float | None
    lr: float

    @property
    def name(self) -> str:
        """The folder stem of its runs, e.g. ``fedasam_rho0.5_eta0.2_lr0.05`` (``repr`` of each float: distinct values, distinct names)."""
        parts = [self.algorithm]
        parts += [f"rho{self.rho!r}"] if self.rho is not None else []
        parts += [f"eta{self.eta!r}"] if self.eta is not None else []
        return safe_name("_".join([*parts, f"lr{self.lr!r}"]))

    @property
    def label(self) -> str:
        """A reader's label: ``fedsam rho=0.05 lr=0.05`` (:func:`fedtrain.sweep_results.point_label`)."""
        return point_label(self.to_dict())

    def config(self, base: TrainConfig, seed: int) -> TrainConfig:
        """``base`` with this point's settings and ``seed``."""
        changes: dict[str, Any] = {"algorithm": self.algorithm, "lr": self.lr, "seed": seed}
        if self.rho is not None:
            changes["rho"] = self.rho
        if self.eta is not None:
            changes["eta"] = self.eta
        return base.replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        """``{"algorithm", "rho", "eta", "lr"}``."""
        return {"algorithm": self.algorithm, "rho": self.rho, "eta": self.eta, "lr": self.lr}


def _finite(values: Sequence[Any], name: str, *, positive: bool = False) -> tuple[float, ...]:
    words = "> 0" if positive else ">= 0"
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"The sweep's {name} list (--{name}) is empty: give at least one value, e.g. --{name} 0.05,0.1.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (positive and v == 0):
            raise ConfigError(f"Every {name} of the sweep (--{name}) must be a finite number {words}, got {shown_value(v)} "
                              f"in {shown_value(list(values))}.")
    if len(set(values)) != len(values):
        raise ConfigError(f"The sweep's {name} list (--{name}) repeats a value: {shown_value(list(values))}. List each once.")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class SweepGrid:
    """The settings a sweep tries: every algorithm x rho x eta x lr x seed that applies (see :meth:`points`).

    Attributes:
        algorithms: the algorithms compared (``fedavg``, ``fedsam``, ``fedasam``).
        rhos: the radii of FedSAM and FedASAM (not used by FedAvg; required when either is swept).
        etas: the ASAM offsets of FedASAM (empty: the base config's eta); only with ``fedasam``.
        lrs: the client learning rates (empty: the base config's lr).
        seeds: the seeds of every point (each a full run; partition and validation split follow the seed).
    """

    algorithms: tuple[str, ...]
    rhos: tuple[float, ...] = ()
    etas: tuple[float, ...] = ()
    lrs: tuple[float, ...] = ()
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise ConfigError(f"The sweep needs at least one algorithm (--algorithm), one of {', '.join(ALGORITHMS)}.")
        unknown = [a for a in self.algorithms if a not in ("fedavg", "fedsam", "fedasam")]
        if unknown or len(set(self.algorithms)) != len(self.algorithms):
            raise ConfigError(f"The sweep's algorithms (--algorithm) must be distinct names among fedavg, fedsam, fedasam, "
                              f"got {shown_value(list(self.algorithms))}.")
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        perturbed = any(a in ("fedsam", "fedasam") for a in self.algorithms)
        if perturbed:
            object.__setattr__(self, "rhos", _finite(self.rhos, "rho"))
        elif self.rhos:
            raise ConfigError("--rho is the radius of FedSAM/FedASAM; a sweep of FedAvg alone has none. Add --algorithm fedsam or fedasam, or drop --rho.")
        if self.etas:
            if "fedasam" not in self.algorithms:
                raise ConfigError("--eta is FedASAM's offset; add --algorithm fedasam, or drop --eta.")
            object.__setattr__(self, "etas", _finite(self.etas, "eta"))
        if self.lrs:
            object.__setattr__(self, "lrs", _finite(self.lrs, "lr", positive=True))
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"The sweep's seeds must be a non-empty list of distinct seeds, got {shown_value(self.seeds)}.")
        object.__setattr__(self, "seeds", tuple(check_seed(s) for s in self.seeds))

    def points(self, base: TrainConfig) -> list[SweepPoint]:
        """The grid points in order: per algorithm, per lr, per eta (FedASAM), per rho."""
        points = []
        for algorithm in self.algorithms:
            for lr in self.lrs or (base.lr,):
                if algorithm == "fedavg":
                    points.append(SweepPoint("fedavg", None, None, lr))
                    continue
                for eta in (self.etas or (base.eta,)) if algorithm == "fedasam" else (None,):
                    points.extend(SweepPoint(algorithm, rho, eta, lr) for rho in self.rhos)
        return points


def _base_record(base: TrainConfig) -> dict[str, Any]:
    """What every run of a sweep shares: the base settings without the point's own ones and without where it computes."""
    return {k: v for k, v in base.to_dict().items() if k not in _POINT_FIELDS + _HOW_FIELDS}


def _run_key(point: SweepPoint, seed: int) -> str:
    return f"{point.name}-seed{seed}"


def read_sweep_plan(path: str | os.PathLike[str]) -> tuple[TrainConfig, list[tuple[SweepPoint, int]]]:
    """The base settings and the planned ``(point, seed)`` runs of a sweep's ``sweep-plan.json``.

    Raises:
        ConfigError: the file is unreadable or not a sweep's plan.
    """
    saved = read_json(path, kind=f"sweep plan ({PLAN_NAME})", error=ConfigError)
    try:
        if saved.get("format") != PLAN_FORMAT:
            raise KeyError("format")
        base = TrainConfig.from_dict({**saved["base"], "algorithm": "fedavg"})
        runs = [(SweepPoint(str(r["algorithm"]), _optional_float(r["rho"]), _optional_float(r["eta"]), float(r["lr"])),
                 check_seed(r["seed"])) for r in saved["runs"]]
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as err:
        raise ConfigError(f"{path} is not the plan of a sweep ({type(err).__name__}: {err}). Use another --out, "
                          "or delete that file if the folder holds no sweep of yours.") from None
    return base, runs


def sweep_plan_file(folder: str | os.PathLike[str]) -> Path | None:
    """The plan of the sweep in ``folder``: ``sweep-plan.json``, or the ``plan.json`` of a sweep started before the
    plan had its own name (a file with the sweep plan's format marker; a reproduction's ``plan.json`` is not one);
    ``None`` when ``folder`` holds no sweep."""
    root = Path(folder)
    if (root / PLAN_NAME).is_file():
        return root / PLAN_NAME
    legacy = root / _LEGACY_PLAN_NAME
    try:
        if legacy.is_file() and read_json(legacy).get("format") == PLAN_FORMAT:
            return legacy
    except (LandscapeError, AttributeError):  # unreadable or not an object: whatever it is, not a sweep's plan
        pass
    return None


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a number or null, got {shown_value(value)}")
    return float(value)


def _plan(out: Path, base: TrainConfig, runs: list[tuple[SweepPoint, int]]) -> list[tuple[SweepPoint, int]]:
    """Every run of the sweep in ``out``: the saved plan's runs, then the new ones; ``sweep-plan.json`` rewritten.

    Raises:
        ConfigError: ``out`` holds a sweep with other base settings, or a plan that is not a sweep's.
    """
    plan_file = sweep_plan_file(out)
    planned: list[tuple[SweepPoint, int]] = []
    if plan_file is not None:
        old_base, planned = read_sweep_plan(plan_file)
        new, old = _base_record(base), _base_record(old_base)
        changed = [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in sorted(set(new) | set(old)) if new.get(k) != old.get(k)]
        if changed:
            raise ConfigError(f"{out} holds a sweep with other base settings ({'; '.join(changed)}), whose runs would not be "
                              "comparable with these. Use another --out, or the same settings to continue it; only the grid "
                              "(algorithms, rho, eta, lr, seeds) may change, and a new grid extends the sweep.")
    keys = {_run_key(p, s) for p, s in planned}
    planned += [(p, s) for p, s in runs if _run_key(p, s) not in keys]
    write_json(out / PLAN_NAME, {"format": PLAN_FORMAT, "format_version": 1, "base": _base_record(base),
                                 "runs": [{**p.to_dict(), "seed": s, "folder": f"runs/{_run_key(p, s)}"} for p, s in planned]})
    if plan_file is not None and plan_file.name == _LEGACY_PLAN_NAME:
        plan_file.unlink()  # renamed: a plan.json would make the folder look like a reproduction
    return planned


class _SweepProgress:
    """The whole sweep as one ``"sweep"`` progress stage in runs, its detail the running run's round and loss.

    ETA: every run has the same rounds, so seconds left = rounds left (the running run's and the runs still to
    train) x the seconds per round trained so far in this session (rounds a resumed run had done before excluded).
    """

    def __init__(self, total: int, rounds: int, listener: ProgressCallback | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.rounds, self.listener, self.clock = total, rounds, listener, clock
        self.done = 0
        self.to_train = 0  # runs not yet started, the running one excluded
        self.trained_rounds = 0  # rounds trained in this session by the finished runs, and their seconds
        self.seconds = 0.0
        self._label = ""
        self._start = 0.0
        self._first: int | None = None  # rounds the running run had done when this session started it
        self._last = 0

    def begin(self) -> None:
        """The stage's first event (``done=0``), as every progress stage starts."""
        self._report("")

    def start(self, index: int, label: str, to_train: int) -> None:
        """Run ``index`` (1-based) starts; ``to_train`` runs are still to train after it."""
        self._label, self._start, self._first, self.to_train = f"run {index}/{self.total} {label}", self.clock(), None, to_train
        self._report(self._label)

    def train_event(self, event: dict[str, Any]) -> None:
        """A round of the running run (``fedtrain.run.train``'s dict event)."""
        done = int(event["round"])
        if self._first is None:
            self._first = done - 1
        self._last = done
        rounds_here = self.trained_rounds + done - self._first
        rate = (self.seconds + self.clock() - self._start) / rounds_here
        eta = rate * (self.rounds - done + self.to_train * self.rounds)
        self._report(f"{self._label}, round {done}/{event['rounds']}, loss {event['train_loss']:.4f}", eta)

    def finish(self, trained: bool) -> None:
        """The running run (``trained``) or a finished one (skipped) is done."""
        if trained and self._first is not None:
            self.seconds += self.clock() - self._start
            self.trained_rounds += self._last - self._first
        self.done += 1
        self._report("")

    def _report(self, detail: str, eta: float | None = None) -> None:
        report(self.listener, Progress("sweep", self.done, self.total, "runs", detail=detail, eta=eta))


def _score(folder: Path, rounds: int) -> dict[str, Any]:
    """A finished run's score and its evidence, from its ``summary.json``, and its convergence check (from ``metrics.jsonl``).

    Raises:
        ConfigError: the run was not evaluated on a validation split (a foreign run in the sweep's folder).
    """
    summary = read_summary(RunPaths(folder).summary)
    if summary.get("eval_split") != "validation":
        raise ConfigError(f"{folder} was evaluated on the test split, not on a validation split: a sweep never compares "
                          "test accuracies. Move that folder out of the sweep's runs/ and rerun.")
    return {"accuracy": summary["last_k_mean_accuracy"], "last_k": summary["last_k"],
            "final_accuracy": summary["final_accuracy"], "best_accuracy": summary["best_accuracy"],
            "convergence": convergence_of(read_metrics(RunPaths(folder).metrics), rounds).to_dict(),
            "wall_seconds": summary.get("wall_seconds")}


@holds_lock("out")  # one sweep per folder; its runs take their own locks inside it
def sweep(
    base: TrainConfig,
    grid: SweepGrid,
    out: str | os.PathLike[str],
    *,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every run of the grid (skipping finished ones, resuming interrupted ones), score them on the validation split, pick the best.

    Args:
        base: the settings every run shares (preset, rounds, data, ``validation > 0``); each run takes the
            point's algorithm, rho, eta, lr and its seed from the grid.
        grid: the points and seeds.
        out: the sweep folder (``sweep-plan.json``, ``sweep.json``, ``sweep.md``, ``runs/``).
        threads: torch CPU threads of every run (``None``: torch's choice, or a resumed run's recorded count).
        progress: the sweep's progress (:class:`~fedtrain.progress.Progress` events, stage ``"sweep"``).
        log: called with one line per run started, skipped or finished.

    Returns:
        The record written to ``sweep.json``: ``settings``, ``selection_rule``, ``runs``, ``points``, ``best``.

    Raises:
        ConfigError: a base without a validation split, a folder holding another sweep or a foreign run, bad settings.
        DirectoryBusyError: another process writes ``out``.
    """
    if base.validation <= 0:
        raise ConfigError("A sweep tunes on a validation split carved from the training data: pass --validation N "
                          "(training examples held out; e.g. 5000 of Fashion-MNIST's 60,000). Tuning on the test split "
                          "would leave no unbiased test accuracy.")
    say = log or (lambda line: None)
    root = Path(out)
    for name, what in (("plan.json", "a reproduction"), ("config.json", "a training run")):
        if (root / name).is_file() and sweep_plan_file(root) != root / name:
            raise ConfigError(f"{root} holds {what} ({name}); a sweep writes its own runs/ and files, which would mix with it. "
                              "Choose another --out.")
    points = grid.points(base)
    # Before anything is written: every run's settings are valid, and every seed's partition fits what the
    # validation split leaves (the partition depends on the seed, not on the point).
    dataset = load_dataset(base.dataset, base.data_dir, test=False)
    for point in points:
        point.config(base, grid.seeds[0])
    for seed in grid.seeds:
        run_inputs(base.replace(seed=seed), dataset)
    del dataset  # each run loads its own copy: not two in memory while it trains
    planned = _plan(root, base, [(p, s) for p in points for s in grid.seeds])
    folders = [inside(root, "runs", _run_key(p, s)) for p, s in planned]
    finished = [RunPaths(f).summary.is_file() for f in folders]
    meter = _SweepProgress(len(planned), base.rounds, progress)
    meter.begin()
    for index, ((point, seed), folder, done) in enumerate(zip(planned, folders, finished), 1):
        label = f"{point.label} seed {seed}"
        if done:
            say(f"[sweep] run {index}/{len(planned)} {label}: done already, skipped")
            meter.finish(False)
            continue
        resumed = RunPaths(folder).config.is_file()
        say(f"[sweep] run {index}/{len(planned)} {label}{' (resumed)' if resumed else ''} ...")
        meter.start(index, label, sum(1 for d in finished[index:] if not d))
        before = time.perf_counter()
        summary = train(point.config(base, seed), folder, resume=resumed, threads=threads, progress=meter.train_event)
        meter.finish(True)
        say(f"[sweep] run {index}/{len(planned)} {label}: validation accuracy {100 * summary['last_k_mean_accuracy']:.2f}% "
            f"(mean of the last {summary['last_k']} evaluations), {time.perf_counter() - before:.1f} s")
    runs = [{**p.to_dict(), "seed": s, "folder": f"runs/{_run_key(p, s)}", **_score(f, base.rounds)}
            for (p, s), f in zip(planned, folders)]
    summary_points = summarise(runs)
    record = {
        "format": SWEEP_FORMAT, "format_version": 1,
        "settings": {**_base_record(base), "eval_split": "validation"},
        "selection_rule": SELECTION_RULE,
        "runs": runs,
        "points": summary_points,
        "best": best_points(summary_points),
    }
    write_json(root / "sweep.json", record)
    atomic_write_text(root / "sweep.md", sweep_table(record))
    return record
