"""The analysis settings records (Hessian, surface) and every choice list the CLI offers for them; torch-free.

A settings record is a frozen dataclass: defaults and validation live here and nowhere else. The CLI
builds one from its flags, the library API takes one, and ``to_dict()`` is what the JSON outputs
record, so one name travels unchanged from ``--top-k`` to ``top_k=`` to ``"top_k"``. Changing a
setting means ``dataclasses.replace(settings, top_k=10)``, which validates again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fedtrain.config import check_device_spec, check_seed, shown_value
from fedtrain.errors import ConfigError

__all__ = [
    "SPLITS",
    "WEIGHTS",
    "HESSIAN_BACKENDS",
    "TRACE_METHODS",
    "DIRECTION_KINDS",
    "BN_MODES",
    "ONE_DIM_POLICIES",
    "EVALUATION_METHODS",
    "SURFACE_PLOT_KINDS",
    "HessianSettings",
    "SurfaceSettings",
    "MEASURES",
    "MeasureSettings",
    "TrackingSettings",
    "settings_from_dict",
    "MAX_GRID_POINTS",
    "MAX_KRYLOV_BYTES",
]

SPLITS: tuple[str, ...] = ("train", "test")
WEIGHTS: tuple[str, ...] = ("auto", "swa", "global")  # auto: the SWA model when the checkpoint has one
HESSIAN_BACKENDS: tuple[str, ...] = ("fedlandscape", "pyhessian")
TRACE_METHODS: tuple[str, ...] = ("hutch++", "hutchinson")
DIRECTION_KINDS: tuple[str, ...] = ("random", "hessian")
BN_MODES: tuple[str, ...] = ("eval", "recalibrate")
ONE_DIM_POLICIES: tuple[str, ...] = ("zero", "keep", "filter")
EVALUATION_METHODS: tuple[str, ...] = ("loop", "vmap")
SURFACE_PLOT_KINDS: tuple[str, ...] = ("3d", "contour", "heatmap")
# Flatness measures of landscape.hessian.measures, in the order they are reported.
MEASURES: tuple[str, ...] = ("lambda-max", "trace", "worst", "adaptive-worst", "average", "ggn", "fisher")
# The largest surface grid: 4,096 x 4,096 points, the largest a surface.npz may hold (one float64 array of
# 128 MiB, fedtrain.validate's npz member bound); each point is a pass over the samples, so far beyond any use.
MAX_GRID_POINTS = 4096**2
# The largest float64 Krylov basis a Hessian analysis may hold (Lanczos restarts, SLQ, Hutch++ sketch), checked
# against the model's size before any product: 64 GiB, more than a 80 GB GPU holds beside the model and data.
MAX_KRYLOV_BYTES = 64 * 2**30


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    _need(value in choices, f"{name} must be one of {', '.join(choices)} (--{name.replace('_', '-')}), got {shown_value(value)}.")


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
          f"{name} must be >= {minimum} (an integer, --{name.replace('_', '-')}), got {shown_value(value)}.")


def _optional_positive_int(name: str, value: Any) -> None:
    if value is not None:
        _positive_int(name, value)


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    bound = "a number >= 0" if allow_zero else "a positive number"
    _need(ok, f"{name} must be {bound} (finite, --{name.replace('_', '-')}), got {shown_value(value)}.")


def _flag(name: str, value: Any) -> None:
    _need(isinstance(value, bool), f"{name} must be true or false (--{name.replace('_', '-')}/--no-{name.replace('_', '-')}), got {shown_value(value)}.")


@dataclass(frozen=True)
class HessianSettings:
    """How ``landscape hessian`` measures a model: data subset, eigensolver, trace and density budgets.

    One Hessian-vector product is one pass over the ``num_examples`` samples. Seeds, one generator per
    component: subset and Lanczos ``seed``, trace ``seed + 1``, density ``seed + 2``.

    Attributes:
        split: data split the loss is taken on (``"train"`` or ``"test"``).
        num_examples: size of the fixed seeded subset (``None``: the whole split).
        batch_size: samples per product pass (memory only; the result does not depend on it).
        top_k: number of top eigenpairs.
        tol: relative residual tolerance ``||Hv - lambda v|| <= tol |lambda|``.
        max_matvecs: product budget of the eigensolver (``None``: ``max(200, 40 k)``).
        trace, trace_method, trace_matvecs: whether, how (Hutch++ or Hutchinson) and with how many products.
        density, density_probes, density_steps: SLQ eigenvalue density (probes x Lanczos steps products).
        seed: the seed of every random choice above.
        weights: which model of a checkpoint (``auto``: SWA when present).
        backend: ``fedlandscape`` or ``pyhessian`` (PyHessian 0.1 on the same inputs, for cross-checks).
        device: where the model, the data subset and the vectors live: ``auto`` (CUDA when available),
            ``cpu``, ``cuda`` or ``cuda:N`` (resolved by :func:`fedtrain.device.resolve_device`).
        subsets: analyse this many disjoint seeded subsets of ``num_examples`` samples each and report the
            across-subset mean and standard error of lambda_1..k and the trace (1: the one subset of before;
            see :mod:`landscape.hessian.subsets`). Left out of ``to_dict()`` while 1, so plans and reports
            written before it existed read the same.
    """

    split: str = "train"
    num_examples: int | None = 2048
    batch_size: int = 256
    top_k: int = 5
    tol: float = 1e-3
    max_matvecs: int | None = None
    trace: bool = True
    trace_method: str = "hutch++"
    trace_matvecs: int = 60
    density: bool = True
    density_probes: int = 10
    density_steps: int = 80
    seed: int = 0
    weights: str = "auto"
    backend: str = "fedlandscape"
    device: str = "auto"
    subsets: int = 1

    def __post_init__(self) -> None:
        check_device_spec(self.device)
        _positive_int("subsets", self.subsets)
        _need(self.subsets == 1 or self.num_examples is not None,
              f"subsets (--subsets) is {self.subsets} but num_examples is None (the whole split): disjoint subsets need a "
              "subset size. Pass --samples N with N at most the split's size divided by --subsets.")
        _need(self.split in SPLITS, f"split must be 'train' or 'test' (--split), got {shown_value(self.split)}.")
        _choice("weights", self.weights, WEIGHTS)
        _choice("backend", self.backend, HESSIAN_BACKENDS)
        _choice("trace_method", self.trace_method, TRACE_METHODS)
        _optional_positive_int("num_examples", self.num_examples)
        _optional_positive_int("max_matvecs", self.max_matvecs)
        for name in ("batch_size", "top_k", "density_probes", "density_steps"):
            _positive_int(name, getattr(self, name))
        _positive_int("trace_matvecs", self.trace_matvecs, minimum=3)
        check_seed(self.seed)
        _positive_float("tol", self.tol)
        _need(self.tol < 1, f"tol (--tol) must be below 1, got {self.tol!r}: ||Hv - lambda v|| <= tol |lambda| with tol >= 1 "
                            "accepts vectors that are no eigenvectors at all. The presets use 1e-3 and 1e-4.")
        _flag("trace", self.trace)
        _flag("density", self.density)
        _need(self.max_matvecs is None or self.max_matvecs >= self.top_k,
              f"max_matvecs (--max-matvecs) is {shown_value(self.max_matvecs)} but top_k (--top-k) is {shown_value(self.top_k)}: the eigensolver needs "
              f"at least one product per eigenvalue. Raise --max-matvecs to at least {shown_value(self.top_k)} (default max(200, 40 k)) or lower --top-k.")

    def check_model_size(self, num_parameters: int) -> None:
        """Refuse a request the model cannot answer, before any product: more eigenvalues than it has, or a
        Krylov basis beyond :data:`MAX_KRYLOV_BYTES`.

        An ``n``-parameter model has ``n`` Hessian eigenvalues. Memory, in float64 numbers of ``n``: Lanczos
        keeps ``2 max(2k + 30, 50)`` vectors (:func:`landscape.hessian.lanczos.top_eigenpairs`), SLQ
        ``min(density_steps, n)`` and Hutch++ three sketches of ``trace_matvecs / 3`` vectors.

        Raises:
            ConfigError: what was asked, what the model allows, and the flag that fixes it.
        """
        _need(self.top_k <= num_parameters,
              f"top_k (--top-k) is {shown_value(self.top_k)} but the model has {num_parameters:,} parameters, hence {num_parameters:,} "
              f"Hessian eigenvalues; ask for at most {num_parameters:,}.")
        vectors = {
            "the eigensolver's Lanczos basis (--top-k)": 2 * max(2 * self.top_k + 30, 50),
            "the SLQ density's Lanczos basis (--density-steps)": min(self.density_steps, num_parameters) if self.density else 0,
            "the Hutch++ sketches (--trace-matvecs)": 3 * (self.trace_matvecs // 3) if self.trace and self.trace_method == "hutch++" else 0,
        }
        what, most = max(vectors.items(), key=lambda item: item[1])
        _need(most * num_parameters * 8 <= MAX_KRYLOV_BYTES,
              f"{what} would hold {most:,} float64 vectors of the model's {num_parameters:,} parameters, "
              f"{most * num_parameters * 8 / 2**30:,.1f} GiB, beyond the {MAX_KRYLOV_BYTES // 2**30} GiB an analysis may "
              "allocate; lower that setting.")

    @property
    def seeds(self) -> dict[str, int]:
        """The seed of each random component."""
        return {"lanczos": self.seed, "trace": self.seed + 1, "density": self.seed + 2}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :func:`settings_from_dict` round-trips it (``subsets`` only when it is not 1)."""
        out = dataclasses.asdict(self)
        if self.subsets == 1:
            del out["subsets"]
        return out


@dataclass(frozen=True)
class SurfaceSettings:
    """How ``landscape plot-surface`` samples a loss surface, a line or a plane.

    Random (filter-normalised, Li et al. 2018) or Hessian directions span a grid of ``steps`` points per
    axis over ``[-range, range]``; a line between two checkpoints and a plane through three (Garipov et al.
    2018) are extended by ``margin`` beyond the models.

    Attributes:
        directions: ``random`` or ``hessian`` (ignored for lines and planes).
        range: half-width of the grid along random/Hessian directions.
        steps: points per axis (odd: the centre is on the grid).
        dims: 1 (a curve) or 2 (a surface) for random/Hessian directions.
        margin: extrapolation beyond the models (``None``: 0.5 for a line, 0.2 for a plane).
        splits: the split(s) evaluated.
        num_examples: samples per split, a fixed seeded subset (``None``: all).
        seed: seed of the directions (or the Lanczos start) and of the sample subset.
        bn: BatchNorm ``eval`` (frozen statistics) or ``recalibrate`` (recomputed at every point).
        weights: which model of a checkpoint (``auto``: SWA when present).
        one_dim: random directions on 1-D tensors: ``zero`` (Li et al.'s biasbn), ``keep`` or ``filter``.
        batch_size: samples per forward pass (``None``: 64 on the CPU, chosen from free memory on a GPU).
        points_per_pass: grid points per pass over the data, also the unit of saving (``None``: 8 on the
            CPU, chosen from free memory on a GPU; see :mod:`landscape.surface.passes`).
        method: evaluate a chunk's points one by one (``loop``) or vectorised (``vmap``).
        device: where the models, the data and the grid evaluation live: ``auto`` (CUDA when available),
            ``cpu``, ``cuda`` or ``cuda:N`` (resolved by :func:`fedtrain.device.resolve_device`).
    """

    directions: str = "random"
    range: float = 1.0  # noqa: A003 - one name across API, CLI (--range) and JSON
    steps: int = 21
    dims: int = 2
    margin: float | None = None
    splits: tuple[str, ...] = ("train",)
    num_examples: int | None = 2000
    seed: int = 0
    bn: str = "eval"
    weights: str = "auto"
    one_dim: str = "zero"
    batch_size: int | None = None
    points_per_pass: int | None = None
    method: str = "loop"
    device: str = "auto"

    def __post_init__(self) -> None:
        check_device_spec(self.device)
        _need(isinstance(self.splits, (str, list, tuple)), f"splits must be 'train' and/or 'test', got {shown_value(self.splits)}.")
        splits = (self.splits,) if isinstance(self.splits, str) else tuple(dict.fromkeys(s if isinstance(s, str) else repr(s) for s in self.splits))
        object.__setattr__(self, "splits", splits)
        _need(bool(splits) and all(s in SPLITS for s in splits), f"splits must be 'train' and/or 'test', got {shown_value(splits)}.")
        _choice("directions", self.directions, DIRECTION_KINDS)
        _choice("bn", self.bn, BN_MODES)
        _choice("weights", self.weights, WEIGHTS)
        _choice("one_dim", self.one_dim, ONE_DIM_POLICIES)
        _choice("method", self.method, EVALUATION_METHODS)
        _positive_float("range", self.range)
        _need(isinstance(self.steps, int) and not isinstance(self.steps, bool) and self.steps >= 2,
              f"A grid needs at least 2 steps per axis (an integer, --steps), got {shown_value(self.steps)}.")
        _need(self.dims in (1, 2) and not isinstance(self.dims, bool), f"dims (--dims) must be 1 or 2, got {shown_value(self.dims)}.")
        if self.margin is not None:
            _positive_float("margin", self.margin, allow_zero=True)
        _optional_positive_int("num_examples", self.num_examples)
        check_seed(self.seed)
        _optional_positive_int("batch_size", self.batch_size)
        _optional_positive_int("points_per_pass", self.points_per_pass)
        self.check_grid(self.dims)

    def check_grid(self, ndim: int) -> None:
        """Refuse a grid of ``steps`` points on each of ``ndim`` axes beyond :data:`MAX_GRID_POINTS` (a plane has 2
        axes whatever ``dims`` says), before anything is allocated.

        Raises:
            ConfigError: the grid's size and the largest allowed.
        """
        _need(self.steps <= MAX_GRID_POINTS, f"steps (--steps) must be at most {MAX_GRID_POINTS:,}, got {shown_value(self.steps)}.")
        points = self.steps**ndim
        _need(points <= MAX_GRID_POINTS,
              f"A grid of {' x '.join([str(self.steps)] * ndim)} has {points:,} points ({points * 8 / 2**30:,.1f} GiB per stored "
              f"quantity, and a pass over the samples per point); at most {MAX_GRID_POINTS:,} (4096 x 4096) are allowed. Lower --steps.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :func:`settings_from_dict` round-trips it."""
        out = dataclasses.asdict(self)
        out["splits"] = list(self.splits)
        return out


@dataclass(frozen=True)
class MeasureSettings:
    """Which flatness measures ``landscape hessian --measures`` computes, and their budgets and radii.

    Every measure is taken on the same fixed seeded data subset (that of the :class:`HessianSettings`
    it runs with). Seeds, one generator per component: worst-case starts ``seed + 3``, average-case
    draws ``seed + 4``, trace probes ``seed + 1``, Lanczos ``seed`` (the Hessian analysis's own).

    Attributes:
        measures: names from :data:`MEASURES` (``lambda-max``, ``trace``, ``worst``, ``adaptive-worst``,
            ``average``, ``ggn``, ``fisher``).
        rho: radius of worst-case sharpness ``max_{||delta|| <= rho} L(w + delta) - L(w)``.
        adaptive_rho: radius of adaptive worst-case sharpness, ``||T_w^{-1} delta|| <= adaptive_rho``.
        eta: the offset of ASAM's ``T_w = |w| + eta`` (0: invariant to rescaling the layers).
        ascent_steps: gradient evaluations of the projected ascent (each one pass over the subset).
        sigma: standard deviation of the Gaussian perturbation of average-case sharpness.
        average_samples: antithetic pairs ``(delta, -delta)`` drawn for average-case sharpness.
        tol: relative residual tolerance of the top eigenvalues (Hessian, GGN, empirical Fisher).
        max_matvecs: product budget of each top eigenvalue.
        trace_matvecs: Hutch++ products of the trace.
    """

    measures: tuple[str, ...] = MEASURES
    rho: float = 0.05
    adaptive_rho: float = 0.5
    eta: float = 0.0
    ascent_steps: int = 20
    sigma: float = 0.01
    average_samples: int = 32
    tol: float = 1e-3
    max_matvecs: int = 200
    trace_matvecs: int = 60

    def __post_init__(self) -> None:
        measures = (self.measures,) if isinstance(self.measures, str) else tuple(dict.fromkeys(self.measures))
        object.__setattr__(self, "measures", measures)
        _need(bool(measures) and all(m in MEASURES for m in measures),
              f"measures (--measures) must be a comma-separated list of {', '.join(MEASURES)}, got {','.join(map(str, measures))!r}.")
        for name in ("rho", "adaptive_rho", "sigma", "tol"):
            _positive_float(name, getattr(self, name))
        _positive_float("eta", self.eta, allow_zero=True)
        for name in ("ascent_steps", "average_samples", "max_matvecs"):
            _positive_int(name, getattr(self, name))
        _positive_int("trace_matvecs", self.trace_matvecs, minimum=3)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :func:`settings_from_dict` round-trips it."""
        out = dataclasses.asdict(self)
        out["measures"] = list(self.measures)
        return out


@dataclass(frozen=True)
class TrackingSettings:
    """How ``landscape train --track-sharpness EVERY`` measures the global model while it trains.

    Every ``every`` rounds, the top Hessian eigenvalue (and with ``trace`` the Hutch++ trace) of the mean
    cross-entropy on a fixed seeded subset of ``num_examples`` samples of ``split``, by Lanczos started from
    the previous check's top eigenvector (``warm_start``).

    Attributes:
        every: rounds between checks (each one must be an evaluated round of the run).
        num_examples: size of the fixed subset (seed ``seed``).
        split: the split it is drawn from.
        batch_size: samples per product pass (memory only).
        tol: relative residual tolerance of lambda_max.
        max_matvecs: product budget of one check's eigensolver.
        trace, trace_matvecs: whether and with how many products to estimate the trace (seed ``seed + 1``).
        warm_start: start Lanczos from the previous top eigenvector (else from a random vector).
        verify: also run the eigensolver's check that no eigenvalue above the one found was missed (a few
            more products a check; off by default: a check follows lambda_max from the previous one).
        seed: seed of the subset and of the Lanczos start vectors.
    """

    every: int = 10
    num_examples: int = 128
    split: str = "train"
    batch_size: int = 128
    tol: float = 1e-2
    max_matvecs: int = 100
    trace: bool = False
    trace_matvecs: int = 30
    warm_start: bool = True
    verify: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        _need(self.split in SPLITS, f"split must be 'train' or 'test', got {self.split!r}.")
        for name in ("every", "num_examples", "batch_size", "max_matvecs"):
            _positive_int(name, getattr(self, name))
        _positive_int("trace_matvecs", self.trace_matvecs, minimum=3)
        check_seed(self.seed)
        _positive_float("tol", self.tol)
        for name in ("trace", "warm_start", "verify"):
            _need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :func:`settings_from_dict` round-trips it."""
        return dataclasses.asdict(self)


Settings = TypeVar("Settings", HessianSettings, SurfaceSettings, MeasureSettings, TrackingSettings)


def settings_from_dict(cls: type[Settings], values: Mapping[str, Any]) -> Settings:
    """A settings record from a mapping (keys may use dashes), refusing unknown keys.

    Raises:
        ConfigError: unknown keys or invalid values.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    clean = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(clean) - names)
    _need(not unknown, f"Unknown {cls.__name__} field(s) {', '.join(unknown)}. Valid: {', '.join(sorted(names))}.")
    for name in ("splits", "measures"):
        if isinstance(clean.get(name), list):
            clean[name] = tuple(clean[name])
    return cls(**clean)
