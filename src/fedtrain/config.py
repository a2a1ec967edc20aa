"""Training configuration: one frozen record of every setting, presets, config files, and their resolution order.

Resolution order (later wins): dataclass defaults -> ``preset`` -> config file (TOML or YAML) -> explicit
overrides (CLI flags). The resolved record is what a run saves as ``config.json`` and in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedtrain.errors import ConfigError
from fedtrain.plugins import is_import_path
from fedtrain.validate import MAX_CONFIG_BYTES, UntrustedFile, parse_yaml, read_text, shown_value

__all__ = [
    "DATASETS",
    "MODEL_NAMES",
    "PARTITION_SCHEMES",
    "ALGORITHMS",
    "OPTIMIZERS",
    "SWA_COLLECT_MODES",
    "CLIENT_SAMPLING_SCHEMES",
    "COHORT_MODES",
    "ENGINES",
    "PRESETS",
    "SWA_FIELDS",
    "DEVICE_SPEC",
    "check_device_spec",
    "MAX_SEED",
    "check_seed",
    "MAX_THREADS",
    "check_threads",
    "shown_value",
    "TrainConfig",
    "preset_config",
    "load_config_file",
    "setting_problem",
    "resolve_config",
]

# The choice lists the CLI offers. The registries that implement them (fedtrain.data, fedtrain.models,
# fedtrain.partition) import or are tested against these names, so this torch-free module is the one place
# a new name is added.
DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic")
MODEL_NAMES: tuple[str, ...] = ("cnn", "mlp", "resnet18-gn")
PARTITION_SCHEMES: tuple[str, ...] = ("dirichlet", "iid", "dirichlet-class")
# algorithm -> local optimiser of ClientConfig; the methods themselves are in fedtrain.methods (BUILTIN_METHODS
# holds exactly these names). A user's method is named by import path instead (package.module:Class).
ALGORITHMS: dict[str, str] = {"fedavg": "sgd", "fedsam": "sam", "fedasam": "asam", "mofedsam": "sam", "fedgamma": "sam",
                              "fedlesam": "sgd", "fedgloss": "sam", "fedspeed": "sam"}  # FedLESAM: one pass a step, its perturbation is not SAM's
OPTIMIZERS: tuple[str, ...] = tuple(dict.fromkeys(ALGORITHMS.values()))
SWA_COLLECT_MODES: tuple[str, ...] = ("end", "reference")
# How a round draws its clients (fedtrain.server.select_clients): the toolkit's (seed, round)-derived draw, or the
# FedSAM code's NumPy draw seeded with the round index alone (fedsam.md §1.1).
CLIENT_SAMPLING_SCHEMES: tuple[str, ...] = ("toolkit", "reference")
COHORT_MODES: tuple[str, ...] = ("auto", "sequential", "vmap")  # how a round trains its clients (fedtrain.cohort)
ENGINES: tuple[str, ...] = ("native", "flower")  # what runs the rounds: this process, or Flower nodes (fedtrain.flower)
# paper values, CIFAR-10 (fedsam.md §2.4); MoFedSAM and FedGAMMA: FL-Simulator's --rho default (train.py); FedLESAM:
# its train.py default; FedGloSS: the clients' --rho-l of the authors' paper_experiments scripts
DEFAULT_RHO = {"fedavg": None, "fedsam": 0.1, "fedasam": 0.7, "mofedsam": 0.1, "fedgamma": 0.1, "fedlesam": 0.1, "fedgloss": 0.15,
               "fedspeed": 0.1}
# Radii tuned for a preset's task on a validation split carved from its training data (`landscape sweep`; the
# README's "Tuning the radii" has the sweep): a run of that preset that gives no rho gets these, not DEFAULT_RHO.
# quick: 50-round runs, 3,000 held-out examples, seed 0 (runs/sweeps/ in the README's commands).
PRESET_RHO: dict[str, dict[str, float]] = {"quick": {"fedsam": 0.005, "fedasam": 0.5}}
SWA_FIELDS = ("swa", "swa_start", "swa_c", "swa_lr", "swa_collect")
DEVICE_SPEC = re.compile(r"auto|cpu|cuda(:\d+)?")  # resolved to a torch.device by fedtrain.device


def check_device_spec(spec: object) -> str:
    """``spec`` itself when it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: anything else.
    """
    if not isinstance(spec, str) or DEVICE_SPEC.fullmatch(spec) is None:
        raise ConfigError(f"device (--device) must be auto, cpu, cuda or cuda:N (N a GPU index), got {spec!r}.")
    return spec


# torch.Generator.manual_seed takes at most 2**64 - 1 and NumPy any integer >= 0: 2**63 - 1 leaves room for the
# seeds derived by adding to it (seed + 1, seed + 2 of a Hessian analysis) and is a signed 64-bit integer everywhere.
MAX_SEED = 2**63 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` itself when it is an integer in ``0 .. 2**63 - 1`` (:data:`MAX_SEED`), the seeds every generator takes.

    Raises:
        ConfigError: anything else (a bool, a float, a string, a negative or too large integer).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} (--{name.replace('_', '-')}) must be an integer from 0 to 2**63 - 1 "
                          f"({MAX_SEED}), got {shown_value(seed)}. Seeds are recorded with the results; pick another.")
    return seed


# torch.set_num_threads overflows beyond a C int; past the cores, threads only contend (the machine has os.cpu_count()).
MAX_THREADS = 1024


def check_threads(threads: object) -> int:
    """``threads`` itself when it is an integer from 1 to :data:`MAX_THREADS` (torch's CPU thread count).

    Raises:
        ConfigError: anything else.
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"threads (--threads) must be an integer from 1 to {MAX_THREADS}, got {shown_value(threads)}. "
                          "Use at most the machine's CPU cores.")
    return threads


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, never a count to us


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_AT_LEAST_1 = ("an integer >= 1", lambda v: _is_int(v) and v >= 1)
_AT_LEAST_0 = ("an integer >= 0", lambda v: _is_int(v) and v >= 0)
_POSITIVE = ("a finite number > 0", lambda v: _is_number(v) and v > 0)
_NON_NEGATIVE = ("a finite number >= 0", lambda v: _is_number(v) and v >= 0)
_NAME = ("a name (a string)", lambda v: isinstance(v, str))
# What each setting must be, checked in field order before anything is derived from the values, so a value
# of the wrong type (a string from a config file, a bool where a count belongs) is named, not a traceback.
_RULES: dict[str, tuple[str, Any]] = {
    "dataset": _NAME, "model": _NAME, "partition": _NAME, "algorithm": _NAME, "swa_collect": _NAME, "client_sampling": _NAME,
    "data_dir": ("a folder path (a string) or null", lambda v: v is None or isinstance(v, str)),
    "model_kwargs": ("a mapping of model options with string keys", lambda v: isinstance(v, Mapping) and all(isinstance(k, str) for k in v)),
    "alpha": ("a finite number >= 0 or null", lambda v: v is None or (_is_number(v) and v >= 0)),
    "num_clients": _AT_LEAST_1,
    "samples_per_client": ("an integer >= 1 or null (all samples split evenly)", lambda v: v is None or (_is_int(v) and v >= 1)),
    "rho": ("a finite number >= 0 or null (the algorithm's default)", lambda v: v is None or (_is_number(v) and v >= 0)),
    "eta": _NON_NEGATIVE,
    "swa": ("true or false", lambda v: isinstance(v, bool)),
    "swa_start": ("a fraction in [0, 1) or a whole round number",
                  lambda v: _is_number(v) and v >= 0 and (v < 1 or float(v).is_integer())),
    "swa_c": _AT_LEAST_1, "swa_lr": _NON_NEGATIVE,
    "rounds": _AT_LEAST_1, "clients_per_round": _AT_LEAST_1, "local_epochs": _AT_LEAST_1, "batch_size": _AT_LEAST_1,
    "lr": _POSITIVE, "weight_decay": _NON_NEGATIVE,
    "momentum": ("a finite number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "server_lr": _POSITIVE,
    "server_momentum": ("a finite number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "eval_every": _AT_LEAST_1, "eval_last": _AT_LEAST_0,
    "eval_examples": ("an integer >= 1 or null (the whole test set)", lambda v: v is None or (_is_int(v) and v >= 1)),
    "validation": ("an integer >= 0 (training examples held out for evaluation; 0: evaluate on the test split)", _AT_LEAST_0[1]),
    "last_k": _AT_LEAST_1, "checkpoint_every": _AT_LEAST_0,
    "checkpoint_rounds": ("a list of round numbers (integers >= 1)",
                          lambda v: isinstance(v, (list, tuple)) and all(_is_int(r) and r >= 1 for r in v)),
    "preset": ("null or a preset name (quick, paper-cifar10)", lambda v: v is None or (isinstance(v, str) and v in PRESETS)),
    "method_args": ("a mapping of the method's settings, string keys to numbers, strings or booleans",
                    lambda v: isinstance(v, Mapping) and all(isinstance(k, str) and (isinstance(x, (str, bool)) or _is_number(x))
                                                             for k, x in v.items())),
}
_FLAGS = {"model_kwargs": "config key model_kwargs", "checkpoint_rounds": "--checkpoint-round", "method_args": "--method-arg"}


def _check_values(config: TrainConfig) -> None:
    """Every setting of ``config`` has its type, is finite and in range (:data:`_RULES`), and the seed is one a generator takes.

    Raises:
        ConfigError: the first setting that is not, with its flag, the value and what it must be.
    """
    for f in dataclasses.fields(config):
        if f.name in _RULES:
            words, ok = _RULES[f.name]
            value = getattr(config, f.name)
            if not ok(value):
                flag = _FLAGS.get(f.name, f"--{f.name.replace('_', '-')}")
                raise ConfigError(f"{f.name} ({flag}) must be {words}, got {shown_value(value)}.")
    check_seed(config.seed)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a federated training run (defaults: the paper's CIFAR-10 hyper-parameters, 100 rounds).

    Attributes:
        dataset, data_dir: what to train on (see :func:`fedtrain.data.load_dataset`).
        model, model_kwargs: a :data:`fedtrain.models.MODELS` name and its extra arguments (e.g. ``hidden``).
        partition, alpha, num_clients, samples_per_client: the federated split (:func:`fedtrain.partition.make_partition`).
        algorithm: ``fedavg`` (local SGD), ``fedsam`` (local SAM), ``fedasam`` (local ASAM), another built-in
            method of :data:`ALGORITHMS` (:mod:`fedtrain.methods`), or a user's method ``package.module:Class``.
        rho, eta: SAM/ASAM radius and ASAM offset; ``rho=None`` resolves to the preset's tuned radius (:data:`PRESET_RHO`),
            else the paper's 0.1 (FedSAM) / 0.7 (FedASAM) (:data:`DEFAULT_RHO`).
        swa, swa_start, swa_c, swa_lr, swa_collect: server-side SWA (:mod:`fedtrain.swa`). ``swa_start`` < 1
            is a fraction of ``rounds``, >= 1 a round index.
        rounds, clients_per_round, local_epochs, batch_size, lr, weight_decay, momentum: the FedAvg loop.
        client_sampling: how each round draws its clients (:func:`fedtrain.server.select_clients`): ``toolkit``
            (derived from ``(seed, round)``) or ``reference`` (the FedSAM code's ``np.random.seed(round)`` draw, the
            same clients for every seed). A config without the key means ``toolkit``.
        server_lr, server_momentum: the server optimiser (1 and 0 = FedAvg; momentum > 0 = FedAvgM).
        eval_every, eval_last, eval_examples: evaluate every ``eval_every`` rounds and at every one of the
            last ``eval_last`` rounds, on ``eval_examples`` test images (``None`` = the whole test set).
        validation: training examples held out as a validation split (:mod:`fedtrain.holdout`): drawn
            (seeded) before the partition, so no client trains on them, and evaluated instead of the test
            split, which is then not read (``eval_examples`` of them when set). 0 (a config without the
            key): no validation split, evaluation on the test split.
        last_k: the summary's "final accuracy" is the mean over the last ``last_k`` evaluations (paper: 100 rounds).
        checkpoint_every, checkpoint_rounds: ``latest.pt`` every so many rounds (0: only at evaluations)
            and extra kept checkpoints ``round_XXXXX.pt`` after these rounds.
        seed: the seed of every random choice (model init, partition, client sampling, data order).
        preset: the preset the config started from, recorded for the reader.
        device: where the run computes: ``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``
            (:func:`fedtrain.device.resolve_device`). How, not what: a run may resume on another device.
        deterministic: on a GPU, ``torch.use_deterministic_algorithms`` for the run (slower; an operation
            without a deterministic kernel raises). No effect on CPU numbers.
        cohort, cohort_chunk, cohort_compile: how a round trains its sampled clients (:mod:`fedtrain.cohort`):
            ``sequential`` (one after another, the reference), ``vmap`` (all together, equal up to float32
            rounding) or ``auto`` (vmap on CUDA, sequential on the CPU, as measured); at most ``cohort_chunk``
            clients per vectorised computation (0: as many as fit); ``torch.compile`` of the vectorised step.
        observers: what is measured on the global model while it trains, ``{name: settings}`` (e.g.
            ``{"sharpness": {...}}`` from ``--track-sharpness``): recorded so a resume rebuilds the same
            observers (:mod:`fedtrain.observers`); it never changes the training numbers.
        method_args: the method's own settings (``--method-arg key=value``, a config file's ``method_args:``),
            checked against its ``Settings`` when the run starts (:func:`fedtrain.methods.load_method`).
    """

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    model: str = "cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    partition: str = "dirichlet"
    alpha: float | None = 0.0
    num_clients: int = 100
    samples_per_client: int | None = None
    algorithm: str = "fedavg"
    rho: float | None = None
    eta: float = 0.2
    swa: bool = False
    swa_start: float = 0.75
    swa_c: int = 10
    swa_lr: float = 1e-4
    swa_collect: str = "end"
    rounds: int = 100
    clients_per_round: int = 5
    client_sampling: str = "toolkit"
    local_epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 4e-4
    momentum: float = 0.0
    server_lr: float = 1.0
    server_momentum: float = 0.0
    eval_every: int = 10
    eval_last: int = 0
    eval_examples: int | None = None
    validation: int = 0
    last_k: int = 5
    checkpoint_every: int = 0
    checkpoint_rounds: tuple[int, ...] = ()
    seed: int = 0
    preset: str | None = None
    device: str = "auto"
    deterministic: bool = False
    cohort: str = "auto"
    cohort_chunk: int = 0
    cohort_compile: bool = False
    observers: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_args: dict[str, Any] = field(default_factory=dict)
    # Whether rho came from the user (not the algorithm's default): ``replace`` must keep a given rho even
    # when it equals another algorithm's default, and re-resolve a defaulted one. Not a setting: neither
    # compared nor serialised.
    rho_given: bool = field(init=False, default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_values(self)
        object.__setattr__(self, "rho_given", self.rho is not None)
        if self.rho is None:
            object.__setattr__(self, "rho", PRESET_RHO.get(self.preset or "", {}).get(self.algorithm, DEFAULT_RHO.get(self.algorithm)))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        object.__setattr__(self, "method_args", dict(self.method_args))
        if isinstance(self.observers, Mapping) and all(isinstance(v, Mapping) for v in self.observers.values()):
            object.__setattr__(self, "observers", {str(k): dict(v) for k, v in self.observers.items()})
        object.__setattr__(self, "checkpoint_rounds", tuple(sorted({int(r) for r in self.checkpoint_rounds})))
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        check_device_spec(self.device)
        need(isinstance(self.observers, dict) and all(isinstance(v, dict) for v in self.observers.values()),
             f"observers must map observer names to their settings, got {self.observers!r}.")
        need(isinstance(self.deterministic, bool), f"deterministic (--deterministic) must be true or false, got {self.deterministic!r}.")
        need(self.cohort in COHORT_MODES, f"cohort (--cohort) must be one of {', '.join(COHORT_MODES)}, got {self.cohort!r}.")
        need(isinstance(self.cohort_chunk, int) and not isinstance(self.cohort_chunk, bool) and self.cohort_chunk >= 0,
             f"cohort_chunk (--cohort-chunk) must be an integer >= 0 (0 = as many clients as fit), got {self.cohort_chunk!r}.")
        need(isinstance(self.cohort_compile, bool), f"cohort_compile (--cohort-compile) must be true or false, got {self.cohort_compile!r}.")
        need(self.dataset in DATASETS, f"Unknown dataset {self.dataset!r}. Available datasets: {', '.join(DATASETS)}.")
        need(self.model in MODEL_NAMES, f"Unknown model {self.model!r}. Available models: {', '.join(sorted(MODEL_NAMES))}.")
        need(self.partition in PARTITION_SCHEMES,
             f"Unknown partition scheme {self.partition!r}. Available schemes: {', '.join(PARTITION_SCHEMES)}.")
        need(self.algorithm in ALGORITHMS or is_import_path(self.algorithm),
             f"Unknown algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}, or name your own method "
             "as package.module:Class.")
        need(self.swa_collect in SWA_COLLECT_MODES, f"swa_collect must be 'end' or 'reference', got {self.swa_collect!r}.")
        need(self.client_sampling in CLIENT_SAMPLING_SCHEMES,
             f"client_sampling (--client-sampling) must be one of {', '.join(CLIENT_SAMPLING_SCHEMES)}, got {self.client_sampling!r}.")
        # each value's type and range were checked by _check_values; what follows ties settings together
        need(self.clients_per_round <= self.num_clients, f"clients_per_round ({self.clients_per_round}) cannot exceed num_clients ({self.num_clients}).")
        if self.swa:
            need(self.swa_start_round < self.rounds, f"SWA would start at round {self.swa_start_round}, at or after the last round ({self.rounds}); lower --swa-start.")
        need(not self.checkpoint_rounds or self.checkpoint_rounds[-1] <= self.rounds,
             f"checkpoint_rounds (--checkpoint-round) {list(self.checkpoint_rounds)} include rounds after the last "
             f"({self.rounds}), whose checkpoints would never be written; drop them or raise --rounds.")
        need(self.partition == "iid" or self.alpha is not None,
             f"partition {self.partition!r} needs alpha (--alpha), the Dirichlet concentration (0: one class per client); got none.")

    # --- derived values (computed, never cached) ---------------------------------------------------
    @property
    def optimizer(self) -> str:
        """The local optimiser of the algorithm: ``sgd``, ``sam`` or ``asam`` (``sgd`` for a user's method, which trains its own way)."""
        return ALGORITHMS.get(self.algorithm, "sgd")

    @property
    def swa_start_round(self) -> int:
        """The 0-indexed round at which SWA starts (``int(0.75 * rounds)`` by default, as the reference)."""
        return int(self.swa_start * self.rounds) if self.swa_start < 1 else int(self.swa_start)

    def evaluates_at(self, round: int) -> bool:
        """Whether the model after (0-indexed) round ``round`` is evaluated: every ``eval_every``, the last ``eval_last``, the last."""
        done = round + 1
        return done % self.eval_every == 0 or done > self.rounds - self.eval_last or done == self.rounds

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``from_dict(to_dict())`` round-trips)."""
        out = dataclasses.asdict(self)
        del out["rho_given"]
        out["checkpoint_rounds"] = list(self.checkpoint_rounds)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; keys may use dashes (``swa-start``).

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        clean = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(clean) - names)
        if unknown:
            raise ConfigError(f"Unknown training setting(s) {', '.join(unknown)}. Valid settings: {', '.join(sorted(names))}.")
        if isinstance(clean.get("data_dir"), os.PathLike):
            clean["data_dir"] = str(clean["data_dir"])
        try:
            return cls(**clean)
        except TypeError as err:
            raise ConfigError(f"Bad training setting: {err}.") from err

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed (re-validated).

        A ``rho`` the user gave is kept; a defaulted one stays defaulted, so it follows a new ``algorithm``
        (``TrainConfig(algorithm="fedsam").replace(algorithm="fedasam").rho == 0.7``, while
        ``TrainConfig(algorithm="fedsam", rho=0.1).replace(algorithm="fedasam").rho == 0.1``).
        """
        values = self.to_dict()
        if not self.rho_given:
            values["rho"] = None
        values.update(changes)
        return TrainConfig.from_dict(values)


PRESETS: dict[str, dict[str, Any]] = {
    # Real Fashion-MNIST, the paper's CNN on 1x28x28, one class per client (alpha 0), sized for ~1-1.5 min of
    # FedAvg on 2 CPU cores: 80 rounds x 10 clients x 3 steps of 32 (see bench/bench_train.py for a round's cost).
    # lr 0.05 (not 0.01) because 80 rounds is a tiny budget; reaches ~55% test accuracy at alpha 0 (random: 10%).
    "quick": dict(
        dataset="fashion-mnist", model="cnn", partition="dirichlet", alpha=0.0, num_clients=100,
        samples_per_client=96, rounds=80, clients_per_round=10, local_epochs=1, batch_size=32, lr=0.05,
        weight_decay=4e-4, momentum=0.0, eta=0.2, swa_c=5, swa_lr=1e-3, swa_start=0.75, eval_every=10,
        eval_last=5, last_k=5, checkpoint_every=10,
    ),
    # The paper's CIFAR-10 setting (fedsam.md §2.3-2.5): 100 clients x 500, K=5, E=1, B=64, lr 0.01, wd 4e-4,
    # 10,000 rounds, evaluation every 100 rounds and at each of the last 100, "final" = mean of the last 100.
    "paper-cifar10": dict(
        dataset="cifar10", model="cnn", partition="dirichlet", alpha=0.0, num_clients=100, samples_per_client=500,
        rounds=10_000, clients_per_round=5, local_epochs=1, batch_size=64, lr=0.01, weight_decay=4e-4,
        momentum=0.0, eta=0.2, swa_c=10, swa_lr=1e-4, swa_start=0.75, eval_every=100, eval_last=100, last_k=100,
        checkpoint_every=100,
    ),
}


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """A preset (``quick`` or ``paper-cifar10``) with some settings overridden.

    Raises:
        ConfigError: unknown preset or invalid overrides.
    """
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return TrainConfig.from_dict({**PRESETS[name], "preset": name, **overrides})


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file of training settings into a dict.

    A top-level ``[train]`` table, if present, is used; otherwise the whole file. The file is untrusted
    input (:mod:`fedtrain.validate`): at most :data:`~fedtrain.validate.MAX_CONFIG_BYTES`, UTF-8, YAML
    without anchors or aliases and with plain values only, a table/mapping at the top, and every known
    setting following :class:`TrainConfig`'s own rule for it (type and range).

    Raises:
        ConfigError: missing, oversized or binary file, unknown extension, unparsable content, a top level
            that is not a mapping, or a setting of the wrong type or out of range.
    """

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"No config file at {file}. Check the path given to --config.")
    suffix = file.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"{file}: config files must end in .toml, .yaml or .yml, got {suffix or 'no extension'!r}.")
    untrusted = UntrustedFile(file, "config file", "Fix the file (see `landscape train --help` for the settings).", ConfigError)
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(read_text(untrusted, MAX_CONFIG_BYTES))
        except (tomllib.TOMLDecodeError, RecursionError) as err:
            untrusted.fail(f"it could not be parsed as TOML ({err or type(err).__name__}); fix the syntax")
    else:
        data = parse_yaml(untrusted, read_text(untrusted, MAX_CONFIG_BYTES))
        data = {} if data is None else data
    if isinstance(data, Mapping) and isinstance(data.get("train"), Mapping):
        data = data["train"]
    settings = untrusted.mapping(data, "its top level")
    for key, value in settings.items():  # TrainConfig's own rules and words, here so that the message names the file
        if (problem := setting_problem(key, value)) is not None:
            untrusted.fail(problem)
    return settings


def setting_problem(key: str, value: object) -> str | None:
    """What is wrong with ``value`` for the setting ``key`` by :class:`TrainConfig`'s own rule, or ``None`` (also for unknown keys).

    For settings read from a file (a config file, a checkpoint's config), so the reader can name the file.
    """
    name = key.replace("-", "_")
    if name not in _RULES:
        return None
    words, ok = _RULES[name]
    if ok(value):
        return None
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    return f"{name} ({flag}) must be {words}, got {shown_value(value)}"


def resolve_config(
    preset: str | None = None, config_file: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Defaults -> preset -> config file -> overrides; a ``preset`` key in the file is honoured unless ``preset`` is given.

    ``method_args`` of the file and of the overrides are merged key by key (the overrides win).

    Raises:
        ConfigError: any invalid part.
    """
    from_file = load_config_file(config_file) if config_file is not None else {}
    preset = preset or from_file.pop("preset", None)
    from_file.pop("preset", None)
    base = dict(PRESETS[preset]) if preset is not None and preset in PRESETS else {}
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    merged = {**base, **from_file, **dict(overrides or {}), "preset": preset}
    if all(isinstance(d.get("method_args"), Mapping) for d in (from_file, overrides or {})):
        merged["method_args"] = {**from_file["method_args"], **overrides["method_args"]}  # --method-arg overrides key by key
    return TrainConfig.from_dict(merged)
