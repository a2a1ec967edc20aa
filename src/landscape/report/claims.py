"""The paper's sharp-versus-flat claims, checked one by one against a results table, with the numbers behind each verdict.

Caldarola, Caputo & Ciccone (ECCV 2022) claim that under heterogeneous client data FedAvg converges to
sharp minima and generalises poorly, and that SAM/ASAM on the clients and SWA on the server find flatter
minima (lower lambda_max and lambda_max/lambda_5) and higher accuracy, most of all at alpha = 0. A
verdict is ``True`` (held), ``False`` (did not hold) or ``None`` (not measured in these runs); it compares
means over seeds and says when the difference is smaller than the spread over seeds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fedtrain.io import atomic_write_text

__all__ = ["Claim", "check_claims", "write_claims", "MeasureCorrelation", "measure_correlations", "write_measure_table"]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and what these runs say about it."""

    text: str
    held: bool | None
    evidence: str


def _row(rows: Sequence[dict[str, Any]], split: str, algorithm: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["split"] == split and r["algorithm"] == algorithm), None)


def _compare(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str, *, lower: bool, name_a: str, name_b: str,
             pct: bool = False) -> tuple[bool | None, str]:
    """Whether ``a[key]`` is lower (or higher) than ``b[key]``, with the numbers."""
    if a is None or b is None or a.get(key) is None or b.get(key) is None:
        return None, f"not measured ({name_a if a is None or a.get(key) is None else name_b} missing)"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    va, vb = a[key] * scale, b[key] * scale
    held = va < vb if lower else va > vb
    text = f"{name_a} {va:.3g}{unit} vs {name_b} {vb:.3g}{unit}"
    spreads = [s * scale for s in (a.get(f"{key}_std"), b.get(f"{key}_std")) if s is not None]
    if spreads and abs(va - vb) < max(spreads):
        text += f" (difference smaller than the spread over seeds, {max(spreads):.2g}{unit})"
    return held, text


def _all(results: Sequence[tuple[bool | None, str]]) -> tuple[bool | None, str]:
    measured = [held for held, _ in results if held is not None]
    held = None if not measured else all(measured)
    return held, "; ".join(text for _, text in results)


def check_claims(rows: Sequence[dict[str, Any]]) -> list[Claim]:
    """Check the paper's claims on a :func:`landscape.plots.paper.results_table` (first split = heterogeneous)."""
    splits = list(dict.fromkeys(r["split"] for r in rows))
    if not splits:
        return []
    het = splits[0]
    hom = splits[1] if len(splits) > 1 else None
    claims: list[Claim] = []

    def add(text: str, result: tuple[bool | None, str]) -> None:
        claims.append(Claim(text, result[0], result[1]))

    for key, what, lower, pct in (("accuracy", "higher test accuracy", False, True),
                                  ("lambda_1", "a lower λ_max (flatter)", True, False),
                                  ("ratio", "a lower λ_max/λ_5", True, False)):
        add(f"At {het}, FedSAM and FedASAM reach {what} than FedAvg.",
            _all([_compare(_row(rows, het, m), _row(rows, het, "FedAvg"), key, lower=lower, name_a=m, name_b="FedAvg", pct=pct)
                  for m in ("FedSAM", "FedASAM")]))
    for key, what, lower, pct in (("accuracy", "raises test accuracy", False, True), ("lambda_1", "lowers λ_max", True, False)):
        add(f"At {het}, server-side SWA {what} for each algorithm.",
            _all([_compare(_row(rows, het, f"{m}+SWA"), _row(rows, het, m), key, lower=lower, name_a=f"{m}+SWA", name_b=m, pct=pct)
                  for m in ("FedAvg", "FedSAM", "FedASAM")]))
    if hom is not None:
        add(f"FedAvg is sharper at {het} than at {hom}.",
            _compare(_row(rows, het, "FedAvg"), _row(rows, hom, "FedAvg"), "lambda_1", lower=False,
                     name_a=f"FedAvg {het}", name_b=f"FedAvg {hom}"))
        gains = []
        for split in (het, hom):
            a, b = _row(rows, split, "FedASAM"), _row(rows, split, "FedAvg")
            gains.append(None if a is None or b is None or a["accuracy"] is None or b["accuracy"] is None
                         else (a["accuracy"] - b["accuracy"]) * 100)
        # A gain must exist to be largest somewhere: two losses of different size are not a larger gain.
        held = None if None in gains else gains[0] > 0 and gains[0] > gains[1]
        evidence = ("not measured" if held is None else
                    f"FedASAM - FedAvg accuracy: {gains[0]:+.2f} points at {het}, {gains[1]:+.2f} at {hom}")
        add(f"FedASAM improves accuracy over FedAvg, most of all at {het}.", (held, evidence))
    pairs = [(r["lambda_1"], r["accuracy"]) for r in rows if r["lambda_1"] is not None and r["accuracy"] is not None]
    if len(pairs) >= 4:
        from scipy.stats import spearmanr

        result = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
        rho, p_value = float(result.statistic), float(result.pvalue)
        # A sign alone is no evidence with a handful of models: ask for a rank correlation unlikely under no relation.
        add("Flatter models generalise better: across all models, λ_max and test accuracy are negatively "
            "rank-correlated (Spearman, p < 0.05).",
            (rho < 0 and p_value < 0.05, f"Spearman rank correlation {rho:+.2f} (p = {p_value:.2f}) over {len(pairs)} models"))
    return claims


def write_claims(claims: Sequence[Claim], path: str | os.PathLike[str], *, seeds: int = 1) -> list:
    """A Markdown table of the verdicts; returns the file written (in a list, like the figure writers)."""
    verdict = {True: "held", False: "did not hold", None: "not measured"}
    lines = ["| claim (Caldarola et al., ECCV 2022) | verdict here | evidence |", "|---|---|---|"]
    lines += [f"| {c.text} | **{verdict[c.held]}** | {c.evidence} |" for c in claims]
    if seeds == 1:
        lines += ["", "One seed per run: a difference between two runs is not tested against seed-to-seed noise "
                  "(rerun with `--seeds N` to get the spread)."]
    atomic_write_text(path, "\n".join(lines) + "\n")
    from pathlib import Path

    return [Path(path)]


@dataclass(frozen=True)
class MeasureCorrelation:
    """How one flatness measure ranks the models against one target, by Kendall's tau with a p-value.

    Attributes:
        measure: the measure's key (e.g. ``lambda_max``, ``adaptive_worst``).
        target: ``accuracy`` (test) or ``gap`` (train minus test accuracy).
        tau: Kendall's tau-b (``None`` with fewer than 3 models).
        p_value: two-sided p-value of ``tau = 0`` (exact without ties, else a seeded permutation test).
        n: models ranked.
        method: ``exact`` or ``permutation (N, seed S)``.
    """

    measure: str
    target: str
    tau: float | None
    p_value: float | None
    n: int
    method: str

    @property
    def explains(self) -> bool:
        """Significant at 5 % with the sign flatness predicts: sharper means lower accuracy, a larger gap."""
        expected = -1 if self.target == "accuracy" else 1
        return self.tau is not None and self.p_value is not None and self.p_value < 0.05 and self.tau * expected > 0


def measure_correlations(rows: Sequence[dict[str, Any]], measures: Sequence[str], targets: Sequence[str] = ("accuracy", "gap"),
                         *, permutations: int = 20000, seed: int = 0) -> list[MeasureCorrelation]:
    """Kendall's tau between every measure and every target across the models of ``rows`` (one dict per model).

    Kendall's tau counts concordant minus discordant pairs, so it depends on the ranks only (a measure and its
    logarithm rank alike). Its p-value is exact (the null distribution over all orderings) when no values tie,
    otherwise from ``permutations`` seeded random permutations of the target, ``(count + 1) / (N + 1)``.
    """
    import numpy as np
    from scipy.stats import kendalltau

    out = []
    for measure in measures:
        for target in targets:
            pairs = [(r[measure], r[target]) for r in rows if r.get(measure) is not None and r.get(target) is not None]
            x, y = np.array([p[0] for p in pairs], dtype=float), np.array([p[1] for p in pairs], dtype=float)
            if len(pairs) < 3:
                out.append(MeasureCorrelation(measure, target, None, None, len(pairs), "too few models"))
                continue
            tau = float(kendalltau(x, y).statistic)
            if len(set(x)) == len(x) and len(set(y)) == len(y):
                p_value, method = float(kendalltau(x, y, method="exact").pvalue), "exact"
            else:
                rng = np.random.default_rng(seed)
                hits = sum(abs(kendalltau(x, rng.permutation(y)).statistic) >= abs(tau) - 1e-12 for _ in range(permutations))
                p_value, method = (hits + 1) / (permutations + 1), f"permutation ({permutations}, seed {seed})"
            out.append(MeasureCorrelation(measure, target, tau, p_value, len(pairs), method))
    return out


def write_measure_table(correlations: Sequence[MeasureCorrelation], path: str | os.PathLike[str],
                        *, invariant: dict[str, bool] | None = None) -> list:
    """A Markdown table of the correlations and a one-line verdict: which measure, if any, explains accuracy."""
    from pathlib import Path

    invariant = invariant or {}
    lines = ["| measure | rescaling-invariant | Kendall tau with test accuracy (p) | Kendall tau with train - test gap (p) | models |",
             "|---|---|---|---|---|"]
    by_measure: dict[str, dict[str, MeasureCorrelation]] = {}
    for c in correlations:
        by_measure.setdefault(c.measure, {})[c.target] = c

    def cell(c: MeasureCorrelation | None) -> str:
        if c is None or c.tau is None:
            return "n/a"
        return f"{c.tau:+.2f} (p = {c.p_value:.2g}){' **' if c.explains else ''}"

    for measure, cs in by_measure.items():
        n = max(c.n for c in cs.values())
        flag = {True: "yes", False: "no"}.get(invariant.get(measure), "?")
        lines.append(f"| {measure} | {flag} | {cell(cs.get('accuracy'))} | {cell(cs.get('gap'))} | {n} |")
    explaining = sorted({c.measure for c in correlations if c.explains and c.target == "accuracy"})
    methods = sorted({c.method for c in correlations if c.tau is not None})
    lines += ["", "** significant at 5 % with the expected sign (sharper: lower accuracy, larger gap). p-values: "
              + ", ".join(methods) + "; no correction for the number of measures tested.", "",
              ("Measures that explain test accuracy here: " + ", ".join(explaining) + ".") if explaining
              else "No measure explains test accuracy here (none is significantly anti-correlated with it at 5 %)."]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return [Path(path)]
