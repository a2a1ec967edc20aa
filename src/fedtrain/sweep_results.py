"""A tuning sweep's results: each grid point's score over seeds with its spread and convergence, the best points with their margins, the table.

A run scores the mean of its last ``last_k`` validation evaluations; a point, the mean over its seeds with the
standard deviation (``ddof=1``) and standard error. :data:`SELECTION_RULE` picks the best point of each
algorithm; its margin over the runner-up is paired by seed (both runs of a seed share the partition and the
validation split). Pure functions of the per-run records :func:`fedtrain.sweep.sweep` collects.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["SELECTION_RULE", "summarise", "best_points", "sweep_table", "point_label"]

SELECTION_RULE = ("the highest mean validation accuracy over seeds (each run scored by the mean of its last k "
                  "evaluations); exact ties go to the smaller rho (the milder perturbation), then the smaller eta, "
                  "then the smaller lr")


def summarise(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per point (in order of first appearance): the seeds' scores, their mean, standard deviation and standard error.

    ``runs`` are the per-run records (``algorithm``, ``rho``, ``eta``, ``lr``, ``seed``, ``accuracy``, and
    optionally ``convergence``, :mod:`fedtrain.convergence`'s record). ``std`` uses ``ddof=1`` and is ``None``
    with one seed, as is ``stderr = std / sqrt(n)``. ``converged``: every seed's run converged (``False`` if one
    did not, ``None`` if that cannot be told); ``gain``: the largest accuracy gain of its runs over the
    convergence window, in points (a point still rising is ranked on a budget, not on its setting).
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["algorithm"], run["rho"], run["eta"], run["lr"]), []).append(run)
    points = []
    for (algorithm, rho, eta, lr), members in groups.items():
        scores = [float(m["accuracy"]) for m in members]
        std = statistics.stdev(scores) if len(scores) > 1 else None
        checks = [m.get("convergence") or {} for m in members]
        verdicts = [c.get("converged") for c in checks]
        gains = [c["gain"] for c in checks if c.get("gain") is not None]
        points.append({"algorithm": algorithm, "rho": rho, "eta": eta, "lr": lr, "seeds": [m["seed"] for m in members],
                       "accuracies": scores, "n": len(scores), "mean": statistics.fmean(scores), "std": std,
                       "stderr": None if std is None else std / math.sqrt(len(scores)),
                       "converged": False if False in verdicts else None if None in verdicts else True,
                       "gain": max(gains) if gains else None})
    return points


def _rank(p: Mapping[str, Any]) -> tuple:
    """:data:`SELECTION_RULE` as a sort key (larger is better)."""
    return (p["mean"], -(p["rho"] or 0.0), -(p["eta"] or 0.0), -p["lr"])


def best_points(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The best point overall and per algorithm, by :data:`SELECTION_RULE`, and each best point's margin over its runner-up.

    Returns:
        ``{"overall": point, "per_algorithm": {name: point}, "margins": {name: margin}}``; a margin (for an
        algorithm with two points or more) compares the best point with the next one by the same rule, paired
        by seed: ``{"runner_up": {algorithm, rho, eta, lr}, "difference": mean of best - runner-up over the
        seeds both have, "stderr": its standard error (``None`` below 2 paired seeds), "n": paired seeds}``.
        A difference within a few standard errors does not single out the best radius.
    """
    per: dict[str, Mapping[str, Any]] = {}
    for p in points:
        if p["algorithm"] not in per or _rank(p) > _rank(per[p["algorithm"]]):
            per[p["algorithm"]] = p
    margins = {}
    for name, best in per.items():
        others = [p for p in points if p["algorithm"] == name and p is not best]
        if others:
            margins[name] = _margin(best, max(others, key=_rank))
    return {"overall": max(points, key=_rank) if points else None, "per_algorithm": per, "margins": margins}


def _margin(best: Mapping[str, Any], runner_up: Mapping[str, Any]) -> dict[str, Any]:
    """``best`` minus ``runner_up``, paired by seed (the same partition and validation split on both sides)."""
    theirs = dict(zip(runner_up["seeds"], runner_up["accuracies"]))
    differences = [a - theirs[s] for s, a in zip(best["seeds"], best["accuracies"]) if s in theirs]
    stderr = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else None
    return {"runner_up": {k: runner_up[k] for k in ("algorithm", "rho", "eta", "lr")},
            "difference": statistics.fmean(differences) if differences else None, "stderr": stderr, "n": len(differences)}


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def sweep_table(record: Mapping[str, Any]) -> str:
    """``sweep.md``: the settings, the table of every point (best of each algorithm in bold) and the selection rule."""
    s = record["settings"]
    ks = sorted({run["last_k"] for run in record["runs"]})  # fewer than last_k when a short run evaluated fewer times
    last = str(ks[0]) if len(ks) == 1 else f"{ks[0]} to {ks[-1]}"
    chosen = {(p["algorithm"], p["rho"], p["eta"], p["lr"]) for p in record["best"]["per_algorithm"].values()}
    lines = [
        f"# Sweep: validation accuracy ({s['dataset']}{', preset ' + s['preset'] if s.get('preset') else ''}, {s['rounds']} rounds, "
        f"{_evaluated(s)} held-out training examples; the test split is never read)",
        "",
        f"Score of a run: the mean of its last {last} evaluations on the validation split; of a point: the mean over "
        "its seeds ± the standard deviation over seeds (n = number of seeds).",
        "",
        "| algorithm | rho | eta | lr | n | validation accuracy (%) | ± std | per seed (%) | converged (largest gain, points) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in record["points"]:
        mark = "**" if (p["algorithm"], p["rho"], p["eta"], p["lr"]) in chosen else ""
        per_seed = ", ".join(f"{100 * a:.2f}" for a in p["accuracies"])
        rho, eta = ("-" if v is None else f"{v:g}" for v in (p["rho"], p["eta"]))
        gain = "" if p.get("gain") is None else f" ({p['gain']:+.1f})"
        converged = {True: "yes", False: "no", None: "?"}[p.get("converged")] + gain
        lines.append(f"| {p['algorithm']} | {rho} | {eta} | {p['lr']:g} | {p['n']} | {mark}{_cell(p['mean'])}{mark} | "
                     f"{_cell(p['std'])} | {per_seed} | {converged} |")
    lines += ["", f"Best (bold): {SELECTION_RULE}."]
    for name, p in record["best"]["per_algorithm"].items():
        spread = "" if p["std"] is None else f" ± {100 * p['std']:.2f}"
        lines.append(f"* {name}: {point_label(p)}: {100 * p['mean']:.2f}{spread} % over {p['n']} seed(s)")
        margin = record["best"].get("margins", {}).get(name)
        if margin is not None and margin["difference"] is not None:
            spread = "" if margin["stderr"] is None else f" ± {100 * margin['stderr']:.2f} (standard error)"
            lines.append(f"  ahead of the runner-up {point_label(margin['runner_up'])} by {100 * margin['difference']:+.2f}{spread} "
                         f"points, paired over {margin['n']} seed(s)")
        if p.get("converged") is False:
            lines.append(f"  (still rising: up to {p['gain']:+.1f} points over the last part of its runs; a longer "
                         "budget may rank the settings differently)")
    return "\n".join(lines) + "\n"


def _evaluated(settings: Mapping[str, Any]) -> str:
    """``"5000"``, or ``"2000 of 5000"`` when each evaluation uses a subset (``eval_examples``)."""
    subset = settings.get("eval_examples")
    return str(settings["validation"]) if subset is None or subset >= settings["validation"] else f"{subset} of {settings['validation']}"


def point_label(point: Mapping[str, Any]) -> str:
    """A reader's label of a point (``algorithm``, ``rho``, ``eta``, ``lr``): ``fedsam rho=0.05 lr=0.05``; unset values left out."""
    values = [f"{k}={point[k]:g}" for k in ("rho", "eta", "lr") if point[k] is not None]
    return " ".join([point["algorithm"], *values])
