"""The main job: train FedAvg / FedSAM / FedASAM (with and without SWA) on a heterogeneous and a homogeneous
split, analyse every final model (accuracy, Hessian spectrum, trace, density, loss surface, a three-model
plane), and draw the paper's figures. Every stage is resumable and skips what is already done.

Layout of ``OUT``::

    plan.json                              settings and seeds (a rerun must use the same)
    runs/<split>/<algorithm>[-swa]/seed<k>/   training run (config, metrics, summary, checkpoints)
        analysis/hessian.json, analysis/surface.npz
    planes/<split>-seed<k>/surface.npz     train-loss plane through FedAvg, FedASAM, FedASAM+SWA
    figures/                               figures, results table, claims
    reproduce.json                         per invocation, what each stage did and how long it took

SWA runs branch off their plain run at the SWA start round (``fedtrain.run.train(init_from=...)``),
which is exact because the two runs are identical until then: X and X+SWA cost about 1.25 runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedtrain.config import TrainConfig, preset_config
from fedtrain.data import load_dataset
from fedtrain.errors import ConfigError
from fedtrain.io import json_roundtrip, read_json, write_json
from fedtrain.run import RunPaths, train
from landscape.report.claims import check_claims, write_claims
from landscape.plots.paper import make_figures

__all__ = ["ReproduceSettings", "RunSpec", "REPRODUCE_PRESETS", "plan_runs", "reproduce"]

_ALL = (("fedavg", False), ("fedsam", False), ("fedasam", False), ("fedavg", True), ("fedsam", True), ("fedasam", True))
_FIG1_PAIR = (("fedavg", False), ("fedasam", False))
PLANE_MODELS = (("fedavg", False), ("fedasam", False), ("fedasam", True))


@dataclass(frozen=True)
class ReproduceSettings:
    """What a reproduction trains and measures.

    Attributes:
        train_preset: the :func:`fedtrain.config.preset_config` every run starts from.
        train_overrides: settings changed for every run (e.g. a smaller dataset for a smoke test).
        splits: ``(name, alpha)`` of the Dirichlet splits (Hsu et al.), heterogeneous first.
        algorithms: per split name, the ``(algorithm, swa)`` pairs trained on it.
        hessian: keyword arguments of :func:`landscape.hessian.analysis.analyze_checkpoint`.
        surface: keyword arguments of :func:`landscape.surface.api.surface_for_checkpoint` (random directions).
        plane: the same, for the plane through FedAvg, FedASAM and FedASAM+SWA.
    """

    train_preset: str
    splits: tuple[tuple[str, float], ...]
    algorithms: dict[str, tuple[tuple[str, bool], ...]]
    train_overrides: dict[str, Any] = field(default_factory=dict)
    hessian: dict[str, Any] = field(default_factory=dict)
    surface: dict[str, Any] = field(default_factory=dict)
    plane: dict[str, Any] = field(default_factory=dict)


REPRODUCE_PRESETS: dict[str, ReproduceSettings] = {
    # Real Fashion-MNIST, sized for <= 20 minutes on 2 CPU cores. To fit, the homogeneous split runs only
    # FedAvg and FedASAM (the pair of the paper's Fig. 1) and the analyses use subsets of the data.
    "quick": ReproduceSettings(
        train_preset="quick",
        train_overrides=dict(eval_examples=5000),
        splits=(("heterogeneous", 0.0), ("homogeneous", 100.0)),
        algorithms={"heterogeneous": _ALL, "homogeneous": _FIG1_PAIR},
        hessian=dict(split="train", num_examples=128, batch_size=64, top_k=5, tol=1e-3, trace_matvecs=30,
                     density_probes=8, density_steps=12),
        surface=dict(directions="random", range=1.0, steps=11, splits=("train",), num_examples=400, batch_size=400),
        plane=dict(steps=11, splits=("train",), num_examples=400, batch_size=400),
    ),
    # The paper's setting (CIFAR-10 from --data-dir, 10,000 rounds a run): for a GPU machine.
    "paper-cifar10": ReproduceSettings(
        train_preset="paper-cifar10",
        splits=(("heterogeneous", 0.0), ("homogeneous", 100.0)),
        algorithms={"heterogeneous": _ALL, "homogeneous": _ALL},
        hessian=dict(split="train", num_examples=2048, batch_size=256, top_k=5, tol=1e-4, trace_matvecs=100,
                     density_probes=10, density_steps=80),
        surface=dict(directions="random", range=1.0, steps=41, splits=("train", "test"), num_examples=10000, batch_size=500),
        plane=dict(steps=41, splits=("train",), num_examples=10000, batch_size=500),
    ),
    # A pipeline check on the synthetic task (about a minute on 2 cores): never a result.
    "smoke": ReproduceSettings(
        train_preset="quick",
        train_overrides=dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [16]}, num_clients=10,
                             samples_per_client=60, rounds=8, clients_per_round=3, batch_size=20, swa_c=2,
                             eval_every=2, eval_last=0, last_k=2, checkpoint_every=2),
        splits=(("heterogeneous", 0.0), ("homogeneous", 100.0)),
        algorithms={"heterogeneous": _ALL, "homogeneous": _FIG1_PAIR},
        hessian=dict(split="train", num_examples=200, batch_size=200, top_k=5, tol=1e-3, trace_matvecs=12,
                     density_probes=10, density_steps=10),
        surface=dict(directions="random", range=1.0, steps=5, splits=("train",), num_examples=200, batch_size=200),
        plane=dict(steps=5, splits=("train",), num_examples=200, batch_size=200),
    ),
}


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


def plan_runs(settings: ReproduceSettings, seeds: int, *, data_dir: str | os.PathLike[str] | None = None) -> list[RunSpec]:
    """All training runs, plain runs before the SWA runs that branch off them.

    Plain runs keep a checkpoint at the SWA start round, where their SWA twin branches off.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}.")
    specs = []
    for seed in range(seeds):
        for split, alpha in settings.splits:
            for algorithm, swa in settings.algorithms[split]:
                base = preset_config(settings.train_preset, **{**settings.train_overrides, "alpha": alpha,
                                                               "algorithm": algorithm, "seed": seed,
                                                               "data_dir": None if data_dir is None else str(data_dir)})
                config = base.replace(swa=True) if swa else base.replace(checkpoint_rounds=(base.swa_start_round,))
                specs.append(RunSpec(split, alpha, algorithm, swa, seed, config))
    return sorted(specs, key=lambda s: s.swa)


def _branch_point(spec: RunSpec, specs: list[RunSpec], out: Path) -> Path | None:
    twins = [s for s in specs if not s.swa and (s.split, s.algorithm, s.seed) == (spec.split, spec.algorithm, spec.seed)]
    if not twins:
        return None
    checkpoint = RunPaths(twins[0].folder(out)).at_round(spec.config.swa_start_round)
    return checkpoint if checkpoint.is_file() else None


def _finished(folder: Path) -> bool:
    return RunPaths(folder).summary.is_file() and RunPaths(folder).final.is_file()


def reproduce(
    preset: str | ReproduceSettings,
    out: str | os.PathLike[str],
    *,
    seeds: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or finish) a reproduction into ``out`` and draw its figures.

    Args:
        preset: a :data:`REPRODUCE_PRESETS` name or settings.
        out: the reproduction folder; rerunning continues where it stopped and redraws the figures.
        seeds: number of seeds (0 .. seeds-1), each a full set of runs.
        data_dir: where the dataset is (CIFAR needs it).
        log: called with one line per stage (the library itself never prints).

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
    say = log or (lambda line: None)
    root = Path(out)
    plan = {"preset": name, "seeds": seeds, "settings": asdict(settings)}
    plan_file = root / "plan.json"
    if plan_file.is_file() and read_json(plan_file) != json_roundtrip(plan):
        raise ConfigError(
            f"{root} holds a reproduction with other settings (see {plan_file}). Use another --out, or the same "
            "--preset and --seeds to continue it."
        )
    specs = plan_runs(settings, seeds, data_dir=data_dir)
    load_dataset(specs[0].config.dataset, data_dir)  # fail on missing data before anything is written
    write_json(plan_file, plan)
    record: dict[str, Any] = {"preset": name, "seeds": seeds, "stages": []}

    def stage(kind: str, label: str, action: Callable[[], Any] | None) -> None:
        start = time.perf_counter()
        if action is None:
            say(f"[{kind}] {label}: done already, skipped")
            record["stages"].append({"stage": kind, "what": label, "skipped": True, "seconds": 0.0})
            return
        say(f"[{kind}] {label} ...")
        action()
        seconds = time.perf_counter() - start
        say(f"[{kind}] {label}: {seconds:.1f} s")
        record["stages"].append({"stage": kind, "what": label, "skipped": False, "seconds": seconds})

    for spec in specs:
        folder = spec.folder(root)
        label = f"{spec.split} {spec.name} seed {spec.seed}"
        if _finished(folder):
            stage("train", label, None)
        elif RunPaths(folder).config.is_file():
            stage("train", label + " (resumed)", lambda f=folder, s=spec: train(s.config, f, resume=True))
        else:
            branch = _branch_point(spec, specs, root) if spec.swa else None
            stage("train", label + (" (from the SWA start of its plain run)" if branch else ""),
                  lambda f=folder, s=spec, b=branch: train(s.config, f, init_from=b))

    for spec in specs:
        _analyse(spec, spec.folder(root), settings, stage)
    for seed in range(seeds):
        for split, _ in settings.splits:
            _plane(root, specs, split, seed, settings, stage)

    figures_dir = root / "figures"
    start = time.perf_counter()
    written = make_figures([root / "runs", root / "planes"] if (root / "planes").exists() else [root / "runs"], figures_dir)
    from landscape.plots.paper import collect_runs, results_table

    written["claims"] = write_claims(check_claims(results_table(collect_runs([root / "runs"]))), figures_dir / "claims.md",
                                     seeds=seeds)
    record["stages"].append({"stage": "figures", "what": str(figures_dir), "skipped": False,
                             "seconds": time.perf_counter() - start})
    say(f"[figures] {figures_dir}: {', '.join(sorted(written))}")
    record["figures"] = {k: [str(p) for p in v] for k, v in written.items()}
    record["total_seconds"] = sum(s["seconds"] for s in record["stages"])
    history_file = root / "reproduce.json"
    history = read_json(history_file).get("invocations", []) if history_file.is_file() else []
    write_json(history_file, {"invocations": [*history, record]})  # a rerun that only redraws keeps the first timings
    return record



def _analyse(spec: RunSpec, folder: Path, settings: ReproduceSettings, stage: Callable[..., None]) -> None:
    from landscape.hessian.analysis import analyze_checkpoint
    from landscape.surface.record import load_surface
    from landscape.surface.api import surface_for_checkpoint

    final = RunPaths(folder).final
    label = f"{spec.split} {spec.name} seed {spec.seed}"
    hessian_file = folder / "analysis" / "hessian.json"
    stage("hessian", label, None if hessian_file.is_file() else
          lambda: write_json(hessian_file, analyze_checkpoint(final, seed=spec.seed, **settings.hessian).to_dict()))
    surface_file = folder / "analysis" / "surface.npz"
    exists = surface_file.is_file()
    done = exists and load_surface(surface_file).complete
    stage("surface", label, None if done else
          lambda: surface_for_checkpoint(final, out=surface_file, resume=exists, seed=spec.seed, **settings.surface))


def _plane(root: Path, specs: list[RunSpec], split: str, seed: int, settings: ReproduceSettings,
           stage: Callable[..., None]) -> None:
    from landscape.plots.paper import algorithm_label
    from landscape.surface.record import load_surface, save_surface
    from landscape.surface.api import surface_for_checkpoint

    chosen = [next((s for s in specs if (s.split, s.seed, s.algorithm, s.swa) == (split, seed, a, w)), None)
              for a, w in PLANE_MODELS]
    if any(s is None for s in chosen):
        return
    target = root / "planes" / f"{split}-seed{seed}" / "surface.npz"
    exists = target.is_file()
    if exists and load_surface(target).complete:
        stage("plane", f"{split} seed {seed}", None)
        return
    finals = [RunPaths(s.folder(root)).final for s in chosen]  # type: ignore[union-attr]
    labels = [algorithm_label(s.config) for s in chosen]  # type: ignore[union-attr]

    def compute() -> None:
        surface = surface_for_checkpoint(finals[0], plane=finals[1:], out=target, resume=exists, seed=seed, **settings.plane)
        save_surface(surface.with_metadata(labels=labels), target)

    stage("plane", f"{split} seed {seed} ({', '.join(labels)})", compute)
