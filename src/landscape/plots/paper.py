"""Paper-style figures and the results table, assembled from finished runs without retraining.

A *run* is a training run directory (``config.json``, ``metrics.jsonl``, ``summary.json``) with its
analyses under ``analysis/`` (``hessian.json``, ``surface.npz``); a *plane* is a ``surface.npz`` of
kind ``plane`` under a ``planes/`` folder. :func:`collect_runs` finds them below any folder given.

Figures (PNG and PDF each):
1. ``surfaces_3d``: 3-D loss surfaces, algorithms by split, one shared colour scale (the paper's Fig. 1);
2. ``sharpness``: lambda_max and lambda_max / lambda_5 per algorithm and split, grouped bars;
3. ``spectral_density``: eigenvalue densities overlaid, one panel per split;
4. ``accuracy``: test accuracy versus round, the SWA start marked;
5. ``plane_<name>``: the train-loss plane through three final models, each marked;
6. ``results.md`` / ``results.csv``: accuracy, lambda_1, lambda_1/lambda_5, trace +- stderr per algorithm
   and split, with the number of seeds and their spread (std over seeds) when more than one, and each
   group's convergence check (:mod:`fedtrain.convergence`; recomputed from ``metrics.jsonl`` for runs
   whose summary predates it); the rows keep every seed's numbers for paired comparisons, and the standard
   errors over disjoint data subsets of runs whose Hessian was measured on several (``lambda_1_stderr``,
   ``ratio_stderr``, ``trace_stderr``; :mod:`landscape.hessian.subsets`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedtrain.config import TrainConfig
from fedtrain.convergence import DEFAULT_WINDOW, Convergence, convergence_of
from fedtrain.errors import ConfigError, DataFormatError
from fedtrain.io import atomic_write_text
from fedtrain.run_files import read_metrics, read_run_config, read_summary
from landscape.hessian.analysis import read_report
from landscape.plots.figure import display_text, new_figure, save_figure
from landscape.surface.record import Surface, load_surface

__all__ = ["RunRecord", "collect_runs", "collect_planes", "results_table", "make_figures", "draw_figures", "algorithm_label",
           "split_label"]

_ALGORITHM_NAMES = {"fedavg": "FedAvg", "fedsam": "FedSAM", "fedasam": "FedASAM", "mofedsam": "MoFedSAM", "fedgamma": "FedGAMMA",
                    "fedlesam": "FedLESAM", "fedgloss": "FedGloSS", "fedspeed": "FedSpeed"}
# The paper's six first, then the later methods; a user's method (package.module:Class, shown as Class) after them all.
_ALGORITHM_ORDER = ["FedAvg", "FedSAM", "FedASAM", "FedAvg+SWA", "FedSAM+SWA", "FedASAM+SWA",
                    "MoFedSAM", "FedGAMMA", "FedLESAM", "FedGloSS", "FedSpeed",
                    "MoFedSAM+SWA", "FedGAMMA+SWA", "FedLESAM+SWA", "FedGloSS+SWA", "FedSpeed+SWA"]
_COLORS = {"FedAvg": "#1f77b4", "FedSAM": "#ff7f0e", "FedASAM": "#2ca02c",
           "FedAvg+SWA": "#6baed6", "FedSAM+SWA": "#fdae6b", "FedASAM+SWA": "#74c476",
           "MoFedSAM": "#d62728", "FedGAMMA": "#9467bd", "FedLESAM": "#8c564b", "FedGloSS": "#e377c2", "FedSpeed": "#bcbd22",
           "MoFedSAM+SWA": "#ff9896", "FedGAMMA+SWA": "#c5b0d5", "FedLESAM+SWA": "#c49c94", "FedGloSS+SWA": "#f7b6d2", "FedSpeed+SWA": "#dbdb8d"}
_PAPER_RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
             "xtick.labelsize": 8, "ytick.labelsize": 8}


def algorithm_label(config: TrainConfig) -> str:
    """``FedAvg``, ``FedSAM``, ``FedLESAM``, ... (a user's ``package.module:Class`` as ``Class``), with ``+SWA`` when the run used server-side SWA."""
    name = _ALGORITHM_NAMES.get(config.algorithm, config.algorithm.rpartition(":")[2])
    return f"{name}+SWA" if config.swa else name


def split_label(config: TrainConfig) -> str:
    """The federated split in words, e.g. ``alpha = 0`` or ``iid``."""
    if config.partition == "iid":
        return "iid"
    prefix = "" if config.partition == "dirichlet" else f"{config.partition} "
    return f"{prefix}α = {config.alpha:g}"


@dataclass
class RunRecord:
    """One finished training run and whatever analyses it has."""

    path: Path
    config: TrainConfig
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    hessian: dict[str, Any] | None = None
    surface: Surface | None = None

    @property
    def algorithm(self) -> str:
        return algorithm_label(self.config)

    @property
    def split(self) -> str:
        return split_label(self.config)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def convergence(self) -> Convergence:
        """The run's convergence check: ``summary.json``'s record, or recomputed from ``metrics.jsonl`` for older runs."""
        recorded = self.summary.get("convergence")
        try:
            return Convergence.from_dict(recorded)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            # absent (a run from before the check) or damaged: metrics.jsonl holds everything it is made of
            return convergence_of(self.metrics, self.config.rounds)


def _is_run(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "summary.json").is_file()


def collect_runs(paths: Sequence[str | os.PathLike[str]]) -> list[RunRecord]:
    """Every finished run at or below ``paths`` (a run folder, or a folder of runs such as a reproduction).

    Raises:
        ConfigError: a path does not exist or holds no finished run.
    """
    records: list[RunRecord] = []
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise ConfigError(f"{root} does not exist. Pass training run folders (with summary.json) or a reproduction folder.")
        found = [root] if _is_run(root) else sorted(p.parent for p in root.rglob("summary.json") if _is_run(p.parent))
        for folder in found:
            analysis = folder / "analysis"
            records.append(
                RunRecord(
                    path=folder,
                    config=read_run_config(folder / "config.json", error=DataFormatError),
                    summary=read_summary(folder / "summary.json"),
                    metrics=read_metrics(folder / "metrics.jsonl"),
                    hessian=read_report(analysis / "hessian.json") if (analysis / "hessian.json").is_file() else None,
                    surface=load_surface(analysis / "surface.npz") if (analysis / "surface.npz").is_file() else None,
                )
            )
    if not records:
        raise ConfigError(
            f"No finished training run (a folder with config.json and summary.json) in {', '.join(map(str, paths))}. "
            "Finish the runs with `landscape train --resume` first."
        )
    unique = {r.path.resolve(): r for r in records}
    return sorted(unique.values(), key=lambda r: (r.split, _order(r.algorithm), r.seed))


def collect_planes(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Surface]:
    """Complete plane surfaces (``planes/<name>/surface.npz`` or ``planes/<name>.npz``) at or below ``paths``, by name."""
    planes: dict[str, Surface] = {}
    for given in paths:
        for file in sorted(Path(given).rglob("*.npz")):
            name = _plane_name(file)
            if name is not None:
                surface = load_surface(file)
                if surface.metadata.get("kind") == "plane" and surface.complete:
                    planes[name] = surface
    return planes


def _plane_name(file: Path) -> str | None:
    if file.name == "surface.npz" and file.parent.parent.name == "planes":
        return file.parent.name
    return file.stem if file.parent.name == "planes" else None


def _order(algorithm: str) -> int:
    return _ALGORITHM_ORDER.index(algorithm) if algorithm in _ALGORITHM_ORDER else len(_ALGORITHM_ORDER)


def _groups(records: Sequence[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.split, record.algorithm), []).append(record)
    return groups


def _mean_spread(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    finite = [float(v) for v in values if v is not None]
    if not finite:
        return None, None
    return float(np.mean(finite)), (float(np.std(finite, ddof=1)) if len(finite) > 1 else None)


def _per_seed(group: Sequence[RunRecord]) -> dict[str, dict[int, Any]]:
    """Each run's own numbers by seed, so that claims can pair two methods seed by seed."""
    checks = {r.seed: r.convergence for r in group}
    return {
        "accuracy": {r.seed: r.summary.get("last_k_mean_accuracy") for r in group},
        "lambda_1": {r.seed: (r.hessian or {}).get("eigenvalues", [None])[0] for r in group},
        "ratio": {r.seed: (r.hessian or {}).get("ratio") for r in group},
        "trace": {r.seed: ((r.hessian or {}).get("trace") or {}).get("estimate") for r in group},
        "gain": {seed: c.gain for seed, c in checks.items()},
        "gain_stderr": {seed: c.gain_stderr for seed, c in checks.items()},
        "converged": {seed: c.converged for seed, c in checks.items()},
    }


def _data_stderr(stderrs: Sequence[float | None]) -> float | None:
    """Standard error of a mean over seeds from each run's error over its data subsets: ``sqrt(sum se_i^2) / n``.

    ``None`` unless every run was measured on several disjoint subsets (``landscape hessian --subsets``).
    """
    if not stderrs or any(s is None for s in stderrs):
        return None
    return math.sqrt(math.fsum(s * s for s in stderrs)) / len(stderrs)  # type: ignore[operator]


def _all_converged(flags: Sequence[bool | None]) -> bool | None:
    """False if any seed failed the check, True if every seed passed it, else None (too few evaluations to tell)."""
    return False if False in flags else None if None in flags else True


def results_table(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per (split, algorithm): means over seeds and, with several seeds, their standard deviation.

    ``accuracy`` is each run's mean test accuracy over its last evaluations (the paper's metric);
    ``trace_stderr`` is, for one seed, the standard error over disjoint data subsets when the Hessian was measured
    on several (``HessianSettings.subsets > 1``: data and estimator noise) and else the Hutch++ estimator's own;
    the spread over seeds otherwise. ``lambda_1_stderr`` and ``ratio_stderr`` are the standard errors of the
    mean over seeds that the data subsets give (:func:`_data_stderr`; ``None`` without subsets): with one seed,
    the error of that run's lambda_1 and lambda_1/lambda_k over its subsets.
    ``per_seed`` keeps every run's numbers by seed (accuracy, lambda_1, ratio, trace and its convergence
    check's ``gain``, ``gain_stderr``, ``converged``) for paired comparisons; ``converged`` is the group's
    worst case (False if any seed's run was still rising) and ``gain`` the largest gain over its seeds, in
    points over the last part of training (:mod:`fedtrain.convergence`).
    """
    rows = []
    for (split, algorithm), group in _groups(records).items():
        accuracy = _mean_spread([r.summary.get("last_k_mean_accuracy") for r in group])
        lam1 = _mean_spread([(r.hessian or {}).get("eigenvalues", [None])[0] for r in group])
        ratio = _mean_spread([(r.hessian or {}).get("ratio") for r in group])
        traces = [((r.hessian or {}).get("trace") or {}) for r in group]
        trace = _mean_spread([t.get("estimate") for t in traces])
        subset_err = traces[0].get("subset_stderr") if traces else None
        trace_err = trace[1] if len(group) > 1 else subset_err if subset_err is not None else (traces[0].get("stderr") if traces else None)
        top_k = len((group[0].hessian or {}).get("eigenvalues", [])) or None
        per_seed = _per_seed(group)
        rows.append({
            "split": split, "algorithm": algorithm, "seeds": len(group),
            "accuracy": accuracy[0], "accuracy_std": accuracy[1],
            "lambda_1": lam1[0], "lambda_1_std": lam1[1],
            "lambda_1_stderr": _data_stderr([((r.hessian or {}).get("eigenvalues_stderr") or [None])[0] for r in group]),
            "ratio_stderr": _data_stderr([((r.hessian or {}).get("subsets") or {}).get("ratio_stderr") for r in group]),
            "top_k": top_k, "ratio": ratio[0], "ratio_std": ratio[1],
            "trace": trace[0], "trace_stderr": trace_err,
            "last_k": group[0].summary.get("last_k"),
            "converged": _all_converged(list(per_seed["converged"].values())),
            "gain": max((g for g in per_seed["gain"].values() if g is not None), default=None),
            "convergence_window": group[0].convergence.window,
            "per_seed": per_seed,
        })
    return sorted(rows, key=lambda r: (r["split"], _order(r["algorithm"])))


def _fmt(value: float | None, spread: float | None = None, digits: int = 3, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    scale = 100.0 if pct else 1.0
    text = f"{value * scale:.{1 if pct else digits}f}"
    return text if spread is None else f"{text} ± {spread * scale:.{1 if pct else digits}f}"


def _gain_cell(row: dict[str, Any]) -> str:
    if row.get("gain") is None:
        return "n/a"
    verdict = {True: "converged", False: "still rising", None: "too few evaluations"}[row.get("converged")]
    return f"{row['gain']:+.1f} points ({verdict})"


def write_results_table(rows: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.md`` (human) and ``results.csv`` (machine) in ``out_dir``."""
    k = next((r["top_k"] for r in rows if r["top_k"]), 5)
    window = next((r["convergence_window"] for r in rows if r.get("convergence_window")), DEFAULT_WINDOW)
    lines = [
        f"| split | algorithm | seeds | test accuracy (%) | λ_1 | λ_1 stderr, data | λ_1/λ_{k} | trace ± stderr | "
        f"accuracy gain, last {window:.0%} of rounds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['split']} | {r['algorithm']} | {r['seeds']} | {_fmt(r['accuracy'], r['accuracy_std'], pct=True)} | "
            f"{_fmt(r['lambda_1'], r['lambda_1_std'])} | {_fmt(r.get('lambda_1_stderr'))} | {_fmt(r['ratio'], r['ratio_std'], 2)} | "
            f"{_fmt(r['trace'], r['trace_stderr'], 1)} | {_gain_cell(r)} |"
        )
    note = ("\nAccuracy: mean test accuracy over each run's last evaluations; with several seeds, ± is the standard "
            "deviation over seeds, otherwise the trace's ± is its standard error over the disjoint data subsets the Hessian "
            "was measured on (or the Hutch++ standard error with one subset). λ_1 stderr, data: the standard error of λ_1 "
            "over those subsets (of the mean over seeds; n/a with one subset). Accuracy gain: the fitted "
            "rise of test accuracy over the last rounds (fedtrain.convergence), the largest over the seeds; "
            "'still rising' when it reaches the threshold.\n")
    md, csv_path = out_dir / "results.md", out_dir / "results.csv"
    atomic_write_text(md, "\n".join(lines) + "\n" + note)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["split"])
    writer.writeheader()
    # per-seed values as JSON in one cell, so the CSV stays one row per (split, algorithm)
    writer.writerows([{key: json.dumps(value) if isinstance(value, dict) else value for key, value in row.items()} for row in rows])
    atomic_write_text(csv_path, buffer.getvalue())
    return [md, csv_path]


def plot_surface_grid(records: Sequence[RunRecord], path: Path, *, key: str = "train_loss") -> list[Path]:
    """The paper's Fig. 1: 3-D surfaces, one row per split, one column per algorithm, one colour scale."""
    from landscape.plots.surface import draw_surface_3d, shared_limits

    with_surface = [r for r in records if r.surface is not None and r.surface.ndim == 2 and r.surface.complete]
    if not with_surface:
        return []
    splits = sorted({r.split for r in with_surface})
    algorithms = sorted({r.algorithm for r in with_surface}, key=_order)
    vmin, vmax = shared_limits([r.surface for r in with_surface], key)  # type: ignore[misc]
    fig = new_figure(len(algorithms), len(splits), 2.3, 2.2)
    mappable = None
    for i, split in enumerate(splits):
        for j, algorithm in enumerate(algorithms):
            ax = fig.add_subplot(len(splits), len(algorithms), i * len(algorithms) + j + 1, projection="3d")
            match = [r for r in with_surface if r.split == split and r.algorithm == algorithm]
            if not match:
                ax.set_axis_off()
                ax.set_title(f"{algorithm}, {display_text(split)}\n(not run)", color="0.5")
                continue
            mappable = draw_surface_3d(ax, match[0].surface, key, vmin=vmin, vmax=vmax, cmap="coolwarm")  # type: ignore[arg-type]
            ax.set_title(f"{algorithm}, {display_text(split)}")
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(labelsize=6, pad=0)
    if mappable is not None:
        fig.colorbar(mappable, ax=fig.axes, shrink=0.6, label=key.replace("_", " "))
    return save_figure(fig, path)


def plot_sharpness(rows: Sequence[dict[str, Any]], path: Path) -> list[Path]:
    """lambda_max and lambda_max/lambda_k as grouped bars: groups = algorithms, one bar per split."""
    rows = [r for r in rows if r["lambda_1"] is not None]
    if not rows:
        return []
    splits = sorted({r["split"] for r in rows})
    algorithms = sorted({r["algorithm"] for r in rows}, key=_order)
    k = next((r["top_k"] for r in rows if r["top_k"]), 5)
    fig = new_figure(2, 1, max(3.2, 0.55 * len(algorithms) + 1.5), 2.6)
    width = 0.8 / len(splits)
    for ax, (key, title) in zip(fig.subplots(1, 2), [("lambda_1", "λ_max"), ("ratio", f"λ_max / λ_{k}")]):
        for s, split in enumerate(splits):
            values = [next((r[key] for r in rows if r["split"] == split and r["algorithm"] == a), np.nan) or np.nan for a in algorithms]
            errors = [next((r[f"{key}_std"] for r in rows if r["split"] == split and r["algorithm"] == a), None) or 0.0 for a in algorithms]
            x = np.arange(len(algorithms)) + (s - (len(splits) - 1) / 2) * width
            ax.bar(x, values, width=width, yerr=errors if any(errors) else None, label=display_text(split), capsize=2,
                   color=f"C{s}", edgecolor="black", linewidth=0.4)
        ax.set_xticks(np.arange(len(algorithms)), algorithms, rotation=30, ha="right")
        ax.set_ylabel(title)
        ax.set_title(title)
        ax.legend(frameon=False)
    return save_figure(fig, path)


def plot_densities(records: Sequence[RunRecord], path: Path) -> list[Path]:
    """Eigenvalue densities (stochastic Lanczos quadrature) overlaid, one panel per split."""
    from landscape.plots.spectrum import draw_spectral_density

    with_density = [r for r in records if r.hessian and (r.hessian.get("density") or {}).get("grid") is not None]
    if not with_density:
        return []
    splits = sorted({r.split for r in with_density})
    fig = new_figure(len(splits), 1, 3.6, 2.8)
    axes = np.atleast_1d(fig.subplots(1, len(splits)))
    for ax, split in zip(axes, splits):
        for record in [r for r in with_density if r.split == split and r.seed == min(x.seed for x in with_density)]:
            density = record.hessian["density"]  # type: ignore[index]
            draw_spectral_density(ax, density["grid"], density["values"], label=record.algorithm,
                                  color=_COLORS.get(record.algorithm))
        ax.set_title(f"Hessian eigenvalue density, {display_text(split)}")
    return save_figure(fig, path)


def plot_accuracy(records: Sequence[RunRecord], path: Path) -> list[Path]:
    """Test accuracy versus round, one panel per split; mean over seeds with a min-max band; SWA start dashed."""
    splits = sorted({r.split for r in records})
    fig = new_figure(len(splits), 1, 3.6, 2.7)
    axes = np.atleast_1d(fig.subplots(1, len(splits), sharey=True))
    for ax, split in zip(axes, splits):
        for (group_split, algorithm), group in sorted(_groups(records).items(), key=lambda kv: _order(kv[0][1])):
            if group_split != split:
                continue
            rounds = [m["round"] for m in group[0].metrics]
            curves = np.array([[m["test_accuracy"] for m in r.metrics][: len(rounds)] for r in group
                               if len(r.metrics) >= len(rounds)]) * 100
            style = "--" if "SWA" in algorithm else "-"
            ax.plot(rounds, curves.mean(axis=0), style, label=algorithm, color=_COLORS.get(algorithm), linewidth=1.2)
            if len(curves) > 1:
                ax.fill_between(rounds, curves.min(axis=0), curves.max(axis=0), alpha=0.2, color=_COLORS.get(algorithm))
        starts = sorted({r.config.swa_start_round for r in records if r.split == split and r.config.swa})
        for start in starts:
            ax.axvline(start, color="0.4", linestyle=":", linewidth=1)
            ax.annotate("SWA start", (start, 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="0.3",
                        xytext=(2, 0), textcoords="offset points")
        ax.set_xlabel("round")
        ax.set_title(f"test accuracy, {display_text(split)}")
        ax.legend(frameon=False, fontsize=7)
    axes[0].set_ylabel("test accuracy (%)")
    return save_figure(fig, path)


def plot_plane(name: str, surface: Surface, path: Path, *, key: str = "train_loss") -> list[Path]:
    """The train-loss plane through three models (Garipov et al. 2018), filled contours, each model marked."""
    from landscape.plots.surface import draw_contour, mark_models

    labels = surface.metadata.get("labels")
    # Equal axes keep the plane's geometry (distances between models are real); size the figure to it.
    aspect = float(np.ptp(surface.ycoordinates) / np.ptp(surface.xcoordinates))  # type: ignore[arg-type]
    wide = aspect < 0.6
    fig = new_figure(1, 1, 5.0, min(5.0, max(2.0, 5.0 * aspect + (1.4 if wide else 0.8))))
    ax = fig.subplots()
    drawn = draw_contour(ax, surface, key, filled=True, cmap="coolwarm")
    draw_contour(ax, surface, key)
    mark_models(ax, surface, labels)
    fig.colorbar(drawn, ax=ax, label=key.replace("_", " "), orientation="horizontal" if wide else "vertical",
                 format="%.2f", shrink=0.8)
    ax.set_title(f"{key.replace('_', ' ')} plane, {display_text(name)}")
    return save_figure(fig, path)


def make_figures(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """All figures and the results table for the runs and planes at or below ``paths``, written to ``out``.

    Returns:
        Figure name -> files written (figures whose inputs are missing are left out).

    Raises:
        ConfigError: no finished run found.
    """
    return draw_figures(collect_runs(paths), collect_planes(paths), out)


def draw_figures(records: Sequence[RunRecord], planes: Mapping[str, Surface], out: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """All figures and the results table of collected runs and planes (:func:`collect_runs`, :func:`collect_planes`).

    Args:
        records: the runs.
        planes: plane name -> plane surface.
        out: folder for the figures and ``results.md`` / ``results.csv``.

    Returns:
        Figure name -> files written (figures whose inputs are missing are left out).
    """
    import matplotlib

    rows = results_table(records)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    with matplotlib.rc_context(_PAPER_RC):
        written["surfaces_3d"] = plot_surface_grid(records, out_dir / "surfaces_3d")
        written["sharpness"] = plot_sharpness(rows, out_dir / "sharpness")
        written["spectral_density"] = plot_densities(records, out_dir / "spectral_density")
        written["accuracy"] = plot_accuracy(records, out_dir / "accuracy")
        for name, surface in planes.items():
            written[f"plane_{name}"] = plot_plane(name, surface, out_dir / f"plane_{name}")
        written["results"] = write_results_table(rows, out_dir)
    return {name: files for name, files in written.items() if files}
