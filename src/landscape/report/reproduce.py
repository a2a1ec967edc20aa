"""The main job: train FedAvg / FedSAM / FedASAM (with and without SWA) on a heterogeneous and a homogeneous
split, analyse every final model (accuracy, Hessian spectrum, trace, density, loss surface, a three-model
plane), and draw the paper's figures. Every stage is resumable and skips what is already done.

Layout of ``OUT``::

    plan.json                              settings and seeds (a rerun must use the same)
    runs/<split>/<algorithm>[-swa]/seed<k>/   training run (config, metrics, summary, checkpoints)
        analysis/hessian.json, analysis/surface.npz
    planes/<split>-seed<k>/surface.npz     train-loss plane through FedAvg, FedASAM, FedASAM+SWA
        (partial.npz while it is computed)
    figures/                               figures, results table, claims, report.html (the whole page)
    reproduce.json                         per invocation, what each stage did and how long it took

SWA runs branch off their plain run at the SWA start round (``fedtrain.run.train(init_from=...)``),
which is exact because the two runs are identical until then: X and X+SWA cost about 1.25 runs.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedtrain.config import TrainConfig, preset_config, shown_value
from fedtrain.data import load_dataset
from fedtrain.device import device_record, resolve_device
from fedtrain.errors import ConfigError
from fedtrain.io import json_roundtrip, write_json
from fedtrain.lock import holds_lock
from fedtrain.progress import ProgressCallback
from fedtrain.run import RunPaths, train
from landscape.hessian.analysis import analyze_checkpoint
from landscape.hessian.tracking import TRACKER_NAME, SharpnessTracker
from landscape.settings import TrackingSettings
from landscape.plots.paper import algorithm_label, collect_planes, collect_runs, draw_figures, results_table
from landscape.report.claims import check_claims, write_claims
from landscape.report.html import REPORT_NAME, report_page, write_report
from landscape.report.presets import MAX_SEEDS, PLANE_MODELS, REPRODUCE_PRESETS, ReproduceSettings, restrict_splits
from landscape.report.stages import StageRunner
from landscape.reproduction_files import read_history, read_plan
from landscape.surface.api import surface_for_checkpoint
from landscape.surface.record import load_surface, save_surface

__all__ = ["RunSpec", "plan_runs", "reproduce", "rerun_commands"]

PARTIAL_PLANE = "partial.npz"  # a plane's grid while it is computed, next to its surface.npz


@dataclass(frozen=True)
class RunSpec:
    """One training run of the reproduction."""

    split: str
    alpha: float
    algorithm: str
    swa: bool
    seed: int
    config: TrainConfig

    @property
    def name(self) -> str:
        """``fedasam-swa``-style folder name."""
        return f"{self.algorithm}{'-swa' if self.swa else ''}"

    def folder(self, out: Path) -> Path:
        """The run directory under a reproduction folder."""
        return out / "runs" / self.split / self.name / f"seed{self.seed}"


def plan_runs(settings: ReproduceSettings, seeds: int, *, data_dir: str | os.PathLike[str] | None = None,
              device: str = "auto") -> list[RunSpec]:
    """All training runs, plain runs before the SWA runs that branch off them.

    Plain runs keep a checkpoint at the SWA start round, where their SWA twin branches off. ``device``
    says where they train; it is not part of what a run is (a run may resume on another device).
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds must be an integer from 1 to {MAX_SEEDS} (each seed is a full set of runs), got {shown_value(seeds)}.")
    specs = []
    for seed in range(seeds):
        for split, alpha in settings.splits:
            for algorithm, swa in settings.runs(split):
                base = preset_config(settings.train_preset, **{**settings.train_overrides, "alpha": alpha,
                                                               "algorithm": algorithm, "seed": seed,
                                                               "data_dir": None if data_dir is None else str(data_dir),
                                                               "device": device, **_tracking(settings)})
                config = base.replace(swa=True) if swa else base.replace(checkpoint_rounds=(base.swa_start_round,))
                specs.append(RunSpec(split, alpha, algorithm, swa, seed, config))
    return sorted(specs, key=lambda s: s.swa)


def _tracking(settings: ReproduceSettings) -> dict[str, Any]:
    """The ``observers`` setting of every run when the reproduction tracks sharpness (else nothing)."""
    if not settings.track_sharpness:
        return {}
    return {"observers": {TRACKER_NAME: TrackingSettings(every=settings.track_sharpness).to_dict()}}


def _observers(config: TrainConfig) -> list[SharpnessTracker]:
    """The sharpness tracker a run's config records (built for this run or its resume)."""
    return [SharpnessTracker.for_run(config)] if TRACKER_NAME in config.observers else []


def _branch_point(spec: RunSpec, specs: list[RunSpec], out: Path) -> Path | None:
    twins = [s for s in specs if not s.swa and (s.split, s.algorithm, s.seed) == (spec.split, spec.algorithm, spec.seed)]
    if not twins:
        return None
    checkpoint = RunPaths(twins[0].folder(out)).at_round(spec.config.swa_start_round)
    return checkpoint if checkpoint.is_file() else None


def _finished(folder: Path) -> bool:
    return RunPaths(folder).summary.is_file() and RunPaths(folder).final.is_file()


@holds_lock("out")  # one reproduction per folder; its runs, analyses and planes take their own locks inside it
def reproduce(
    preset: str | ReproduceSettings,
    out: str | os.PathLike[str],
    *,
    seeds: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    progress: ProgressCallback | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    methods: Sequence[str] = (),
    splits: Sequence[str] = (),
) -> dict[str, Any]:
    """Run (or finish) a reproduction into ``out`` and draw its figures.

    Args:
        preset: a :data:`REPRODUCE_PRESETS` name or settings.
        out: the reproduction folder; rerunning continues where it stopped and redraws the figures.
        seeds: number of seeds (0 .. seeds-1), each a full set of runs.
        data_dir: where the dataset is (CIFAR needs it).
        device: where every stage computes (``auto``, ``cpu``, ``cuda``, ``cuda:N``); not part of the plan,
            so a reproduction started on one machine may be finished on another.
        log: called with one line per stage (the library itself never prints).
        progress: the whole job as one ``"reproduce"`` :class:`~fedtrain.progress.Progress` in ``"stages"`` (training
            runs, Hessians, surfaces, planes): the running stage, run k of n, its round / products / grid points,
            and an ETA from what each kind of stage took (:class:`~landscape.report.stages.StageRunner`).
        train_overrides: training settings changed for every run on top of the preset's (``landscape reproduce
            --swa-collect reference --client-sampling reference``); part of the plan, so a reproduction continues
            only with the same ones. One that the preset's runs already have is dropped, so naming a default
            does not change the plan.
        methods: what every split trains instead of the preset's algorithms (``--methods fedavg,fedsam,fedlesam``;
            ``name+swa`` adds the SWA run; :attr:`ReproduceSettings.methods`); part of the plan. Empty: the preset's.
        splits: only these of the preset's splits (``--splits heterogeneous``); part of the plan. Empty: all.

    Returns:
        The record of this invocation, also appended to ``reproduce.json``: per stage what was done or
        skipped and its seconds.

    Raises:
        ConfigError: an unknown preset, or ``out`` holding a reproduction with other settings.
    """
    if isinstance(preset, str):
        if preset not in REPRODUCE_PRESETS:
            raise ConfigError(f"Unknown reproduction preset {preset!r}; choose one of {', '.join(REPRODUCE_PRESETS)}.")
        name, settings = preset, REPRODUCE_PRESETS[preset]
    else:
        name, settings = "custom", preset
    settings = _with_overrides(settings, train_overrides or {})
    if splits:
        settings = restrict_splits(settings, tuple(splits))
    if methods:
        settings = dataclasses.replace(settings, methods=tuple(methods))
    say = log or (lambda line: None)
    root = Path(out)
    plan = {"preset": name, "seeds": seeds, "settings": settings.to_dict()}
    plan_file = root / "plan.json"
    if plan_file.is_file() and not _same_plan(read_plan(plan_file), plan):
        raise ConfigError(
            f"{root} holds a reproduction with other settings (see {plan_file}). Use another --out, or the same "
            "--preset and --seeds to continue it."
        )
    history_file = root / "reproduce.json"  # read now: a damaged record must stop the reproduction before any work
    history = read_history(history_file) if history_file.is_file() else []
    specs = plan_runs(settings, seeds, data_dir=data_dir, device=device)
    used = device_record(resolve_device(device))  # fail on a missing GPU or data before anything is written
    load_dataset(specs[0].config.dataset, data_dir)
    write_json(plan_file, plan)
    record: dict[str, Any] = {"preset": name, "seeds": seeds, "device": device, "device_used": used, "stages": []}

    planes = sum(all(any((s.split, s.seed, s.algorithm, s.swa) == (split, seed, a, w) for s in specs) for a, w in PLANE_MODELS)
                 for seed in range(seeds) for split, _ in settings.splits)
    stage = StageRunner(["train"] * len(specs) + ["hessian", "surface"] * len(specs) + ["plane"] * planes + ["figures"],
                        record["stages"], say, progress)

    for spec in specs:
        folder = spec.folder(root)
        label = f"{spec.split} {spec.name} seed {spec.seed}"
        if _finished(folder):
            stage("train", label, None)
        elif RunPaths(folder).config.is_file():
            stage("train", label + " (resumed)",
                  lambda f=folder, s=spec: train(s.config, f, resume=True, progress=stage.train_progress,
                                                 observers=_observers(s.config)))
        else:
            branch = _branch_point(spec, specs, root) if spec.swa else None
            stage("train", label + (" (from the SWA start of its plain run)" if branch else ""),
                  lambda f=folder, s=spec, b=branch: train(s.config, f, init_from=b, progress=stage.train_progress,
                                                           observers=_observers(s.config)))

    for spec in specs:
        _analyse(spec, spec.folder(root), settings, stage, data_dir, device)
    for seed in range(seeds):
        for split, _ in settings.splits:
            _plane(root, specs, split, seed, settings, stage, data_dir, device)

    figures_dir = root / "figures"
    start = time.perf_counter()
    with stage.running("figures", str(figures_dir)):  # recorded below with the list of figures, not by the runner
        records = collect_runs([root / "runs"])
        written = draw_figures(records, collect_planes([root / "planes"]), figures_dir)
        claims = check_claims(results_table(records))
        written["claims"] = write_claims(claims, figures_dir / "claims.md", seeds=seeds)
    record["stages"].append({"stage": "figures", "what": str(figures_dir), "skipped": False,
                             "seconds": time.perf_counter() - start})
    written["report"] = write_report(figures_dir / REPORT_NAME, report_page(
        figures_dir, title=f"Reproduction '{name}', {seeds} seed{'s' if seeds > 1 else ''}", written=written, claims=claims,
        configs=[r.config.to_dict() for r in records], settings=plan, device=used, timings=[*history, record],
        commands=rerun_commands(name, seeds, root, settings, data_dir)))
    say(f"[figures] {figures_dir}: {', '.join(sorted(written))}")
    record["figures"] = {k: [str(p) for p in v] for k, v in written.items()}
    record["total_seconds"] = sum(s["seconds"] for s in record["stages"])
    write_json(history_file, {"invocations": [*history, record]})  # a rerun that only redraws keeps the first timings
    return record


def rerun_commands(name: str, seeds: int, root: Path, settings: ReproduceSettings,
                   data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The shell commands that rerun (continue, or redraw) the reproduction ``name`` in ``root``."""
    if name not in REPRODUCE_PRESETS:
        return [f"# custom settings: landscape.report.reproduce.reproduce(ReproduceSettings.from_dict(plan['settings']), "
                f"{str(root)!r}, seeds={seeds}) with the settings of {root / 'plan.json'}"]
    words = ["landscape", "reproduce", "--preset", name, "--seeds", str(seeds), "--out", str(root)]
    preset = REPRODUCE_PRESETS[name].train_overrides
    for key in ("swa_collect", "client_sampling"):
        if key in settings.train_overrides and settings.train_overrides[key] != preset.get(key):
            words += [f"--{key.replace('_', '-')}", str(settings.train_overrides[key])]
    splits = [split for split, _ in settings.splits]
    if splits != [split for split, _ in REPRODUCE_PRESETS[name].splits]:
        words += ["--splits", ",".join(splits)]
    if settings.methods:
        words += ["--methods", ",".join(settings.methods)]
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    return [shlex.join(words), shlex.join(["landscape", "figures", str(root / "runs"), str(root / "planes"), "--out",
                                           str(root / "figures")])]


def _with_overrides(settings: ReproduceSettings, overrides: Mapping[str, Any]) -> ReproduceSettings:
    """``settings`` with the training ``overrides`` that change its runs (one equal to the preset's value would only change the plan)."""
    base = preset_config(settings.train_preset, **settings.train_overrides)
    changed = {key: value for key, value in overrides.items() if not hasattr(base, key) or getattr(base, key) != value}
    if not changed:
        return settings
    return dataclasses.replace(settings, train_overrides={**settings.train_overrides, **changed})


def _same_plan(saved: dict[str, Any], plan: dict[str, Any]) -> bool:
    """Whether a saved ``plan.json`` asks for ``plan``; older plans list only the analysis settings they changed."""
    try:
        settings = ReproduceSettings.from_dict(saved["settings"]).to_dict()
    except (ConfigError, KeyError, TypeError):
        return False
    return json_roundtrip({**saved, "settings": settings}) == json_roundtrip(plan)


def _analyse(spec: RunSpec, folder: Path, settings: ReproduceSettings, stage: StageRunner,
             data_dir: str | os.PathLike[str] | None, device: str) -> None:
    final = RunPaths(folder).final
    label = f"{spec.split} {spec.name} seed {spec.seed}"
    hessian_file = folder / "analysis" / "hessian.json"
    hessian = dataclasses.replace(settings.hessian, seed=spec.seed, device=device)
    stage("hessian", label, None if hessian_file.is_file() else
          lambda: write_json(hessian_file, analyze_checkpoint(final, hessian, data_dir=data_dir, progress=stage.progress).to_dict()))
    surface_file = folder / "analysis" / "surface.npz"
    exists = surface_file.is_file()
    done = exists and load_surface(surface_file).complete
    surface = dataclasses.replace(settings.surface, seed=spec.seed, device=device)
    stage("surface", label, None if done else
          lambda: surface_for_checkpoint(final, surface, data_dir=data_dir, out=surface_file, resume=exists,
                                         progress=stage.progress))


def _plane(root: Path, specs: list[RunSpec], split: str, seed: int, settings: ReproduceSettings,
           stage: StageRunner, data_dir: str | os.PathLike[str] | None, device: str) -> None:
    chosen = [next((s for s in specs if (s.split, s.seed, s.algorithm, s.swa) == (split, seed, a, w)), None)
              for a, w in PLANE_MODELS]
    if any(s is None for s in chosen):
        return
    target = root / "planes" / f"{split}-seed{seed}" / "surface.npz"
    if target.is_file() and load_surface(target).complete:
        stage("plane", f"{split} seed {seed}", None)
        return
    finals = [RunPaths(s.folder(root)).final for s in chosen]  # type: ignore[union-attr]
    labels = [algorithm_label(s.config) for s in chosen]  # type: ignore[union-attr]
    plane = dataclasses.replace(settings.plane, seed=seed, device=device)
    # The grid is saved chunk by chunk beside the plane; the plane file itself is written once, with its labels.
    partial = target.with_name(PARTIAL_PLANE)

    def compute() -> None:
        surface = surface_for_checkpoint(finals[0], plane, plane=finals[1:], data_dir=data_dir, out=partial,
                                         resume=partial.is_file(), progress=stage.progress)
        save_surface(surface.with_metadata(labels=labels), target)
        partial.unlink()

    stage("plane", f"{split} seed {seed} ({', '.join(labels)})", compute)
