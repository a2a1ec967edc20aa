"""What a reproduction trains and measures: :class:`ReproduceSettings` and the named presets; torch-free, so the CLI takes its choices here."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedtrain.config import ALGORITHMS, PRESETS, preset_config, shown_value
from fedtrain.errors import ConfigError
from fedtrain.plugins import is_import_path
from landscape.settings import HessianSettings, SurfaceSettings, settings_from_dict

__all__ = ["ReproduceSettings", "REPRODUCE_PRESETS", "ALL_ALGORITHMS", "FIG1_PAIR", "PLANE_MODELS", "MAX_SEEDS", "parse_method",
           "restrict_splits"]

# --seeds: each seed is a full set of runs (12 trainings with their analyses for the presets); the plan is built
# in memory before anything runs, so a number far beyond any reproduction must be refused, not enumerated.
MAX_SEEDS = 1000

# (algorithm, swa) pairs
ALL_ALGORITHMS = (("fedavg", False), ("fedsam", False), ("fedasam", False), ("fedavg", True), ("fedsam", True), ("fedasam", True))
FIG1_PAIR = (("fedavg", False), ("fedasam", False))
PLANE_MODELS = (("fedavg", False), ("fedasam", False), ("fedasam", True))  # the plane through their three final models


# Plans written before the settings records list only the surface settings a preset changed; what they
# left out meant the CPU pass plan of that time, which a missing key must still mean.
_SURFACE_PASSES_BEFORE_RECORDS = {"batch_size": 64, "points_per_pass": 8}


@dataclass(frozen=True)
class ReproduceSettings:
    """What a reproduction trains and measures.

    The ``seed`` of the three analysis records is replaced by each run's seed.

    Attributes:
        train_preset: the :func:`fedtrain.config.preset_config` every run starts from.
        splits: ``(name, alpha)`` of the Dirichlet splits (Hsu et al.), heterogeneous first.
        algorithms: per split name, the ``(algorithm, swa)`` pairs trained on it.
        train_overrides: settings changed for every run (e.g. a smaller dataset for a smoke test).
        hessian: the analysis of every final model (:func:`landscape.hessian.analysis.analyze_checkpoint`).
        surface: its loss surface (:func:`landscape.surface.api.surface_for_checkpoint`, random directions).
        plane: the plane through the final FedAvg, FedASAM and FedASAM+SWA models of a split and seed.
        methods: when given, what every split trains instead of ``algorithms``: method names (the built-ins of
            :data:`fedtrain.config.ALGORITHMS` or ``package.module:Class``), ``name+swa`` for the run with server-side
            SWA (``landscape reproduce --methods``). Recorded in ``plan.json`` only when given.
        track_sharpness: every run logs lambda_max of its global model every this many rounds
            (``landscape train --track-sharpness``; 0: not tracked). Recorded in ``plan.json`` only when set.
    """

    train_preset: str
    splits: tuple[tuple[str, float], ...]
    algorithms: dict[str, tuple[tuple[str, bool], ...]]
    train_overrides: dict[str, Any] = field(default_factory=dict)
    hessian: HessianSettings = HessianSettings()
    surface: SurfaceSettings = SurfaceSettings()
    plane: SurfaceSettings = SurfaceSettings()
    track_sharpness: int = 0
    methods: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(f"Reproduction settings: {message}")

        need(isinstance(self.train_preset, str) and self.train_preset in PRESETS,
             f"train_preset must be one of {', '.join(PRESETS)}, got {shown_value(self.train_preset)}.")
        need(isinstance(self.splits, (list, tuple)) and len(self.splits) > 0 and all(
            isinstance(s, (list, tuple)) and len(s) == 2 and isinstance(s[0], str) and s[0] != ""
            and isinstance(s[1], (int, float)) and not isinstance(s[1], bool) and math.isfinite(s[1]) and s[1] >= 0
            for s in self.splits),
             f"splits must be a list of [name, alpha] pairs (alpha a finite Dirichlet concentration >= 0), got {shown_value(self.splits)}.")
        object.__setattr__(self, "splits", tuple((name, float(alpha)) for name, alpha in self.splits))
        names = [name for name, _ in self.splits]
        need(len(set(names)) == len(names), f"split names must differ, got {names}.")
        need(isinstance(self.algorithms, Mapping) and sorted(map(str, self.algorithms)) == sorted(names),
             f"algorithms must list the runs of each split ({', '.join(names)}) and of no other, got {shown_value(self.algorithms)}.")
        for name, pairs in self.algorithms.items():
            need(isinstance(pairs, (list, tuple)) and len(pairs) > 0 and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and p[0] in ALGORITHMS and isinstance(p[1], bool) for p in pairs),
                 f"algorithms[{name!r}] must be a list of [algorithm, swa] pairs (algorithm one of {', '.join(ALGORITHMS)}, "
                 f"swa true or false), got {shown_value(pairs)}.")
        object.__setattr__(self, "algorithms", {name: tuple((a, swa) for a, swa in pairs) for name, pairs in self.algorithms.items()})
        need(isinstance(self.train_overrides, Mapping), f"train_overrides must be a mapping of training settings, got {shown_value(self.train_overrides)}.")
        preset_config(self.train_preset, **self.train_overrides)  # the overrides' types, ranges and names, as every run gets them
        for name, cls in (("hessian", HessianSettings), ("surface", SurfaceSettings), ("plane", SurfaceSettings)):
            need(isinstance(getattr(self, name), cls), f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}.")
        need(isinstance(self.track_sharpness, int) and not isinstance(self.track_sharpness, bool) and self.track_sharpness >= 0,
             f"track_sharpness must be a whole number of rounds >= 0 (0: not tracked), got {shown_value(self.track_sharpness)}.")
        need(isinstance(self.methods, (list, tuple)) and all(isinstance(m, str) for m in self.methods),
             f"methods must be a list of method names, got {shown_value(self.methods)}.")
        object.__setattr__(self, "methods", tuple(self.methods))
        for entry in self.methods:
            parse_method(entry)
        need(len(set(self.methods)) == len(self.methods), f"methods must differ, got {list(self.methods)}.")

    def runs(self, split: str) -> tuple[tuple[str, bool], ...]:
        """The ``(algorithm, swa)`` pairs split ``split`` trains: ``methods`` when given, else ``algorithms[split]``."""
        return tuple(parse_method(m) for m in self.methods) if self.methods else self.algorithms[split]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what ``plan.json`` records), the analysis records as their ``to_dict()``."""
        return {
            "train_preset": self.train_preset,
            "splits": [list(split) for split in self.splits],
            "algorithms": {name: [list(pair) for pair in pairs] for name, pairs in self.algorithms.items()},
            "train_overrides": dict(self.train_overrides),
            "hessian": self.hessian.to_dict(),
            "surface": self.surface.to_dict(),
            "plane": self.plane.to_dict(),
            # absent when 0, so the plans of reproductions started before tracking existed stay equal
            **({"track_sharpness": self.track_sharpness} if self.track_sharpness else {}),
            **({"methods": list(self.methods)} if self.methods else {}),  # absent by default, as track_sharpness
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ReproduceSettings:
        """The settings of a ``to_dict()`` (analysis records may list only the fields that differ from their defaults).

        Raises:
            ConfigError: missing keys, or invalid analysis settings.
        """
        try:
            return cls(
                train_preset=values["train_preset"],  # converted by nothing: the record refuses a wrong type by name
                splits=tuple(tuple(split) for split in values["splits"]),
                algorithms={name: tuple(tuple(pair) for pair in pairs) for name, pairs in values["algorithms"].items()},
                train_overrides=dict(values.get("train_overrides", {})),
                hessian=settings_from_dict(HessianSettings, values.get("hessian", {})),
                surface=settings_from_dict(SurfaceSettings, {**_SURFACE_PASSES_BEFORE_RECORDS, **values.get("surface", {})}),
                plane=settings_from_dict(SurfaceSettings, {**_SURFACE_PASSES_BEFORE_RECORDS, **values.get("plane", {})}),
                track_sharpness=values.get("track_sharpness", 0),
                methods=tuple(values.get("methods", ())),
            )
        except ConfigError:
            raise  # already names the setting
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"Not a reproduction's settings ({type(err).__name__}: {err}).") from err


def parse_method(entry: str) -> tuple[str, bool]:
    """``"fedlesam"`` -> ``("fedlesam", False)``, ``"fedavg+swa"`` -> ``("fedavg", True)``: one entry of ``--methods``.

    Raises:
        ConfigError: not a built-in method name nor an import path ``package.module:Class``.
    """
    name, swa = (entry[: -len("+swa")], True) if entry.endswith("+swa") else (entry, False)
    if name not in ALGORITHMS and not is_import_path(name):
        raise ConfigError(f"Reproduction settings: unknown method {entry!r} in methods; choose among {', '.join(ALGORITHMS)} "
                          "(add +swa for the run with server-side SWA), or name your own method as package.module:Class.")
    return name, swa


def restrict_splits(settings: ReproduceSettings, names: tuple[str, ...]) -> ReproduceSettings:
    """``settings`` with only the splits ``names`` (``landscape reproduce --splits``), in the preset's order.

    Raises:
        ConfigError: a name that is not one of the settings' splits.
    """
    known = [name for name, _ in settings.splits]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ConfigError(f"--splits: unknown split(s) {', '.join(unknown) or '(none given)'}; this preset's splits are {', '.join(known)}.")
    kept = tuple(split for split in settings.splits if split[0] in names)
    return dataclasses.replace(settings, splits=kept, algorithms={name: settings.algorithms[name] for name, _ in kept})


REPRODUCE_PRESETS: dict[str, ReproduceSettings] = {
    # Real Fashion-MNIST, sized for <= 20 minutes on 2 CPU cores. The CPU pass plan (8 points a pass) is written
    # out, as plans saved before passes could be sized by GPU memory recorded it. To fit, the homogeneous split runs only
    # FedAvg and FedASAM (the pair of the paper's Fig. 1) and the analyses use subsets of the data.
    "quick": ReproduceSettings(
        train_preset="quick",
        train_overrides=dict(eval_examples=5000),
        splits=(("heterogeneous", 0.0), ("homogeneous", 100.0)),
        algorithms={"heterogeneous": ALL_ALGORITHMS, "homogeneous": FIG1_PAIR},
        hessian=HessianSettings(split="train", num_examples=128, batch_size=64, top_k=5, tol=1e-3, trace_matvecs=30,
                                density_probes=8, density_steps=12),
        surface=SurfaceSettings(directions="random", range=1.0, steps=11, splits=("train",), num_examples=400, batch_size=400,
                                points_per_pass=8),
        plane=SurfaceSettings(steps=11, splits=("train",), num_examples=400, batch_size=400, points_per_pass=8),
    ),
    # The committed reproduction (run it with --seeds 3): the quick preset's task at a budget where the accuracy
    # curves have flattened (150 rounds; see the convergence check in every summary.json), the final accuracy a
    # mean over the last 15 rounds, each evaluated, on 3,000 test images (an evaluation of 5,000 costs as much as
    # about 1.7 training rounds here, so every-round evaluation is priced in images).
    "fashion-mnist": ReproduceSettings(
        train_preset="quick",
        train_overrides=dict(rounds=150, eval_every=10, eval_last=15, last_k=15, eval_examples=3000),
        splits=(("heterogeneous", 0.0), ("homogeneous", 100.0)),
        # Cut to fit three seeds into a 2-core session (the quick preset trains them all): the homogeneous split
        # trains FedAvg alone (for the sharper-under-heterogeneity claim), without FedASAM, the paper's Fig. 1
        # pair; SWA is trained for FedAvg and FedASAM, not FedSAM.
        algorithms={"heterogeneous": tuple(p for p in ALL_ALGORITHMS if p != ("fedsam", True)),
                    "homogeneous": (("fedavg", False),)},
        # 3 disjoint subsets of 128: on the quick run's final models the standard error of lambda_1 over 5 such
        # subsets was 4 % (FedAvg) and 2.4 % (FedASAM) of lambda_1, small beside the differences compared
        # (bench/results/hessian-subsets-cpu.txt); 3 keep the analysis of 24 models within the session's budget.
        hessian=HessianSettings(split="train", num_examples=128, batch_size=64, top_k=5, tol=1e-3, trace_matvecs=30,
                                density_probes=8, density_steps=12, subsets=3),
        surface=SurfaceSettings(directions="random", range=1.0, steps=11, splits=("train",), num_examples=400, batch_size=400,
                                points_per_pass=8),
        plane=SurfaceSettings(steps=11, splits=("train",), num_examples=400, batch_size=400, points_per_pass=8),
    ),
    # The paper's setting (CIFAR-10 from --data-dir, 10,000 rounds a run): for a GPU machine.
    "paper-cifar10": ReproduceSettings(
        train_preset="paper-cifar10",
        splits=(("heterogeneous", 0.0), ("homogeneous", 100.0)),
        algorithms={"heterogeneous": ALL_ALGORITHMS, "homogeneous": ALL_ALGORITHMS},
        hessian=HessianSettings(split="train", num_examples=2048, batch_size=256, top_k=5, tol=1e-4, trace_matvecs=100,
                                density_probes=10, density_steps=80),
        surface=SurfaceSettings(directions="random", range=1.0, steps=41, splits=("train", "test"), num_examples=10000,
                                batch_size=500),
        plane=SurfaceSettings(steps=41, splits=("train",), num_examples=10000, batch_size=500),
    ),
    # A pipeline check on the synthetic task (about a minute on 2 cores): never a result.
    "smoke": ReproduceSettings(
        train_preset="quick",
        train_overrides=dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [16]}, num_clients=10,
                             samples_per_client=60, rounds=8, clients_per_round=3, batch_size=20, swa_c=2,
                             eval_every=2, eval_last=0, last_k=2, checkpoint_every=2),
        splits=(("heterogeneous", 0.0), ("homogeneous", 100.0)),
        algorithms={"heterogeneous": ALL_ALGORITHMS, "homogeneous": FIG1_PAIR},
        hessian=HessianSettings(split="train", num_examples=200, batch_size=200, top_k=5, tol=1e-3, trace_matvecs=12,
                                density_probes=10, density_steps=10),
        surface=SurfaceSettings(directions="random", range=1.0, steps=5, splits=("train",), num_examples=200, batch_size=200,
                                points_per_pass=8),
        plane=SurfaceSettings(steps=5, splits=("train",), num_examples=200, batch_size=200, points_per_pass=8),
    ),
}
