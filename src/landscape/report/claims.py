"""The paper's sharp-versus-flat claims, checked one by one against a results table: a verdict, its reason, its numbers.

Caldarola, Caputo & Ciccone (ECCV 2022) claim that under heterogeneous client data FedAvg converges to
sharp minima and generalises poorly, and that SAM/ASAM on the clients and SWA on the server find flatter
minima (lower lambda_max and lambda_max/lambda_5) and higher accuracy, most of all at alpha = 0.

A verdict is one of :data:`VERDICTS`. A claim "A is lower than B" compares the two methods run by run: runs
of the same seed share the partition, the initial model and the clients drawn each round, so they are paired
by seed (:func:`landscape.report.statistics.paired_comparison`) and the verdict reads the 95 % t-interval of
the mean difference A - B:

* **held**: the interval excludes 0 on the claimed side;
* **did not hold**: it excludes 0 on the other side;
* **inconclusive**: it holds 0 (the difference is within the seed spread); or, for a claim about accuracy,
  a run it rests on failed the convergence check (:mod:`fedtrain.convergence`: its accuracy was still
  rising, so the comparison measures the budget); or, with one seed, the difference is within the 95 %
  interval of the data noise, ``1.96 * sqrt(se_A^2 + se_B^2)``, when the rows carry the standard error of the
  quantity over disjoint data subsets (``lambda_1_stderr``, ``ratio_stderr``);
* **not measured**: a run or a quantity the claim needs is missing.

One seed gives no interval over seeds: its verdict is the sign of the difference, and its reason says so.
A claim over several comparisons (FedSAM and FedASAM each against FedAvg) does not hold if any comparison
does not, is inconclusive if any is, and holds if every measured one does.

The flatness-explains-accuracy claim is Spearman's rank correlation between lambda_max and test accuracy
over every model (each seed's run one model), with its p-value. Runs of one seed share a partition, so they
are not independent draws and that p-value is optimistic; ranks pooled within seeds were not used, because
with three to five seeds each seed holds only the 6-8 models of one split mix and its ranks say little alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedtrain.convergence import DEFAULT_THRESHOLD
from fedtrain.io import atomic_write_text
from landscape.report.statistics import PairedComparison, paired_comparison

__all__ = ["VERDICTS", "Claim", "check_claims", "write_claims", "MeasureCorrelation", "measure_correlations",
           "write_measure_table"]

VERDICTS = ("held", "did not hold", "inconclusive", "not measured")
# Two-sided 95 % normal quantile: a one-seed difference within 1.96 data standard errors is noise at the level
# the seed intervals use.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and what these runs say about it.

    Attributes:
        text: the claim.
        verdict: one of :data:`VERDICTS`.
        evidence: the numbers behind the verdict, with their intervals.
        reason: why the verdict is what it is (e.g. "difference within the seed spread, 3 seeds").
    """

    text: str
    verdict: str
    evidence: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}. Got {self.verdict!r}.")

    @property
    def held(self) -> bool | None:
        """True (held), False (did not hold), None (inconclusive or not measured)."""
        return {"held": True, "did not hold": False}.get(self.verdict)


@dataclass(frozen=True)
class _Finding:
    """The verdict of one comparison inside a claim."""

    verdict: str
    reason: str
    evidence: str


def _row(rows: Sequence[dict[str, Any]], split: str, algorithm: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["split"] == split and r["algorithm"] == algorithm), None)


def _values(row: dict[str, Any], key: str) -> dict[int, float] | None:
    """Seed -> value; a row without per-seed values (a hand-made table) counts as one run of seed 0."""
    per_seed = (row.get("per_seed") or {}).get(key)
    if per_seed:
        return {int(s): float(v) for s, v in per_seed.items() if v is not None} or None
    return None if row.get(key) is None else {0: float(row[key])}


def _unconverged(named: Sequence[tuple[str, dict[str, Any]]], seeds: Sequence[int]) -> list[str]:
    """"+4.1 points over the last 20% of rounds (FedSAM seed 1)" for each run among ``seeds`` that failed the check."""
    out = []
    for name, row in named:
        window = row.get("convergence_window") or 0.2
        per_seed = row.get("per_seed") or {}
        flags, gains = per_seed.get("converged"), per_seed.get("gain") or {}
        if flags:
            failed = [(int(s), gains.get(s)) for s, ok in flags.items() if ok is False and int(s) in seeds]
        else:
            failed = [(None, row.get("gain"))] if row.get("converged") is False else []
        for seed, gain in failed:
            where = name if seed is None else f"{name} seed {seed}"
            amount = "" if gain is None else f"{gain:+.1f} points "
            out.append(f"{amount}over the last {window:.0%} of rounds ({where})")
    return out


def _imprecise(named: Sequence[tuple[str, dict[str, Any]]], seeds: Sequence[int]) -> list[str]:
    """Runs among ``seeds`` that passed the check with a gain whose standard error reaches the threshold."""
    out = []
    for name, row in named:
        per_seed = row.get("per_seed") or {}
        flags, gains, errors = (per_seed.get(k) or {} for k in ("converged", "gain", "gain_stderr"))
        for seed, ok in flags.items():
            error = errors.get(seed)
            if ok is True and int(seed) in seeds and error is not None and error >= DEFAULT_THRESHOLD:
                out.append(f"{name} seed {seed} {gains.get(seed):+.1f} ± {error:.1f}")
    return out


def _judge(diff: PairedComparison, *, expected: int, label: str, scale: float, unit: str,
           stderr: float | None = None) -> tuple[str, str]:
    """Verdict and reason of one paired difference whose claimed sign is ``expected`` (+1 higher, -1 lower)."""
    shown = diff.describe(scale=scale, unit=unit)
    if diff.n >= 2:
        if diff.sign == expected:
            return "held", f"{label}: the 95% interval over {diff.n} seeds excludes 0"
        if diff.sign == -expected:
            return "did not hold", f"{label}: the 95% interval over {diff.n} seeds excludes 0 on the other side"
        return "inconclusive", f"{label}: difference {shown.split(' (')[0]} within the seed spread, {diff.n} seeds"
    if stderr is not None and abs(diff.mean) < _Z95 * stderr:
        return "inconclusive", (f"{label}: one seed, difference {diff.mean * scale:+.3g}{unit} within the data noise "
                                f"(±{_Z95 * stderr * scale:.3g}{unit}, 95% from disjoint data subsets)")
    verdict = "held" if diff.mean * expected > 0 else "did not hold"
    return verdict, f"{label}: one seed: no interval over seeds"


def _compare(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str, *, lower: bool, name_a: str, name_b: str,
             pct: bool = False) -> _Finding:
    """Whether ``a[key]`` is lower (or higher) than ``b[key]``, seed by seed, with the numbers and their intervals."""
    missing = [n for n, r in ((name_a, a), (name_b, b)) if r is None or r.get(key) is None]
    if missing or a is None or b is None:
        return _Finding("not measured", f"{missing[0]} not measured", f"not measured ({missing[0]} missing)")
    scale, unit = (100.0, "%") if pct else (1.0, "")
    va, vb = a[key] * scale, b[key] * scale
    evidence = f"{name_a} {va:.3g}{unit} vs {name_b} {vb:.3g}{unit}"
    spreads = [s * scale for s in (a.get(f"{key}_std"), b.get(f"{key}_std")) if s is not None]
    label = f"{name_a} - {name_b}"
    diff = paired_comparison(_values(a, key) or {}, _values(b, key) or {})
    if diff is None:
        return _Finding("inconclusive", f"{label}: no seed measured by both, nothing to pair", evidence)
    if diff.n >= 2:
        if len(spreads) == 2:
            evidence = (f"{name_a} {va:.3g}{unit} ± {spreads[0]:.2g} vs {name_b} {vb:.3g}{unit} ± {spreads[1]:.2g} "
                        "(mean ± std over seeds)")
        evidence += f"; {label} {diff.describe(scale=scale, unit=' points' if pct else '')}"
    elif spreads and abs(va - vb) < max(spreads):
        evidence += f" (difference smaller than the spread over seeds, {max(spreads):.2g}{unit})"
    stderrs = [r.get(f"{key}_stderr") for r in (a, b)]
    stderr = math.hypot(*stderrs) if None not in stderrs and diff.n == 1 else None
    if stderr is not None:
        evidence += f" (data standard errors ±{stderrs[0] * scale:.2g}, ±{stderrs[1] * scale:.2g})"
    verdict, reason = _judge(diff, expected=-1 if lower else 1, label=label, scale=scale, unit=" points" if pct else "",
                             stderr=stderr)
    if key == "accuracy":
        rising = _unconverged([(name_a, a), (name_b, b)], diff.seeds)
        if rising:
            verdict, reason = "inconclusive", f"{label}: accuracy still rising, " + "; ".join(rising)
        noisy = _imprecise([(name_a, a), (name_b, b)], diff.seeds)
        if noisy and not rising:
            # passed the check, but the fit could not have told a 2-point rise from noise: say so
            evidence += f" (convergence fit imprecise, gain in points: {', '.join(noisy)})"
    return _Finding(verdict, reason, evidence)


def _all(findings: Sequence[_Finding]) -> _Finding:
    """One verdict for a claim made of several comparisons (see the module docstring)."""
    measured = [f for f in findings if f.verdict != "not measured"]
    evidence = "; ".join(f.evidence for f in findings)
    if not measured:
        return _Finding("not measured", "; ".join(f.reason for f in findings), evidence)
    verdict = next(v for v in ("did not hold", "inconclusive", "held") if any(f.verdict == v for f in measured))
    reasons = [f.reason for f in measured if f.verdict == verdict]
    reasons += [f.reason for f in findings if f.verdict == "not measured"]
    return _Finding(verdict, "; ".join(dict.fromkeys(reasons)), evidence)


def _gain_claim(rows: Sequence[dict[str, Any]], het: str, hom: str) -> _Finding:
    """FedASAM's accuracy gain over FedAvg is positive at ``het`` and larger there than at ``hom``, seed by seed."""
    gains: list[dict[int, float] | None] = []
    for split in (het, hom):
        a, b = _row(rows, split, "FedASAM"), _row(rows, split, "FedAvg")
        va, vb = (None, None) if a is None or b is None else (_values(a, "accuracy"), _values(b, "accuracy"))
        gains.append(None if not va or not vb else {s: va[s] - vb[s] for s in va if s in vb} or None)
    if gains[0] is None or gains[1] is None:
        return _Finding("not measured", "FedASAM or FedAvg not measured at both splits", "not measured")
    mean_het, mean_hom = (sum(g.values()) / len(g) * 100 for g in gains)  # type: ignore[union-attr]
    evidence = f"FedASAM - FedAvg accuracy: {mean_het:+.2f} points at {het}, {mean_hom:+.2f} at {hom}"
    positive = _compare(_row(rows, het, "FedASAM"), _row(rows, het, "FedAvg"), "accuracy", lower=False,
                        name_a=f"FedASAM {het}", name_b=f"FedAvg {het}", pct=True)
    larger = paired_comparison(gains[0], gains[1])
    if larger is None:
        return _Finding("inconclusive", "no seed measured at both splits, nothing to pair", evidence)
    if larger.n >= 2:
        evidence += f"; gain at {het} minus gain at {hom}: {larger.describe(scale=100, unit=' points')}"
    # A gain must exist to be largest somewhere: two losses of different size are not a larger gain.
    verdict, reason = _judge(larger, expected=1, label=f"gain at {het} - gain at {hom}", scale=100, unit=" points")
    combined = _all([_Finding(positive.verdict, positive.reason, ""), _Finding(verdict, reason, "")])
    rising = _unconverged([(f"{m} {s}", r) for s in (het, hom) for m in ("FedASAM", "FedAvg")
                           if (r := _row(rows, s, m)) is not None], larger.seeds)
    if rising:
        return _Finding("inconclusive", "accuracy still rising, " + "; ".join(rising), evidence)
    return _Finding(combined.verdict, combined.reason, evidence)


def _correlation_claim(rows: Sequence[dict[str, Any]]) -> _Finding | None:
    """Spearman's rho between lambda_max and accuracy over every model (every seed's run), with its p-value."""
    from scipy.stats import spearmanr

    pairs, named = [], []
    for r in rows:
        lam, acc = _values(r, "lambda_1") or {}, _values(r, "accuracy") or {}
        pairs += [(lam[s], acc[s]) for s in sorted(lam) if s in acc]
        named.append((f"{r['algorithm']} {r['split']}", r))
    if len(pairs) < 4:
        return None
    result = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    rho, p_value = float(result.statistic), float(result.pvalue)
    evidence = f"Spearman rank correlation {rho:+.2f} (p = {p_value:.2f}) over {len(pairs)} models"
    # A sign alone is no evidence with a handful of models: ask for a rank correlation unlikely under no relation.
    if rho < 0 and p_value < 0.05:
        verdict, reason = "held", "negative and significant at 5%"
    elif rho > 0 and p_value < 0.05:
        verdict, reason = "did not hold", "significant at 5% with the opposite sign"
    else:
        verdict, reason = "did not hold", f"not significant at 5% ({len(pairs)} models)"
    rising = _unconverged(named, [s for r in rows for s in (_values(r, "accuracy") or {})])
    if rising:
        verdict, reason = "inconclusive", "accuracy still rising, " + "; ".join(rising)
    return _Finding(verdict, reason, evidence)


def check_claims(rows: Sequence[dict[str, Any]]) -> list[Claim]:
    """Check the paper's claims on a :func:`landscape.plots.paper.results_table` (first split = heterogeneous).

    Args:
        rows: one dict per (split, algorithm) with ``accuracy``, ``lambda_1``, ``ratio`` (means), optionally
            ``per_seed`` (key -> seed -> value, also ``converged`` and ``gain`` of each run's convergence
            check), ``converged``/``gain``/``convergence_window`` of the group, ``*_std`` over seeds and
            ``lambda_1_stderr``/``ratio_stderr`` over data subsets. A row without ``per_seed`` is one run.

    Returns:
        The claims, each with its verdict, reason and evidence (see the module docstring for the rules).
    """
    splits = list(dict.fromkeys(r["split"] for r in rows))
    if not splits:
        return []
    het = splits[0]
    hom = splits[1] if len(splits) > 1 else None
    claims: list[Claim] = []

    def add(text: str, finding: _Finding) -> None:
        claims.append(Claim(text, finding.verdict, finding.evidence, finding.reason))

    for key, what, lower, pct in (("accuracy", "higher test accuracy", False, True),
                                  ("lambda_1", "a lower λ_max (flatter)", True, False),
                                  ("ratio", "a lower λ_max/λ_5", True, False)):
        add(f"At {het}, FedSAM and FedASAM reach {what} than FedAvg.",
            _all([_compare(_row(rows, het, m), _row(rows, het, "FedAvg"), key, lower=lower, name_a=m, name_b="FedAvg", pct=pct)
                  for m in ("FedSAM", "FedASAM")]))
    # The methods beyond the paper's (reproduce --methods: MoFedSAM, FedLESAM, a user's method...), each against FedAvg.
    later = [r["algorithm"] for r in rows if r["split"] == het and r["algorithm"] not in ("FedAvg", "FedSAM", "FedASAM")
             and not r["algorithm"].endswith("+SWA")]
    for m in later:
        for key, what, lower, pct in (("lambda_1", "a lower λ_max (flatter)", True, False), ("accuracy", "higher test accuracy", False, True)):
            add(f"At {het}, {m} reaches {what} than FedAvg.",
                _compare(_row(rows, het, m), _row(rows, het, "FedAvg"), key, lower=lower, name_a=m, name_b="FedAvg", pct=pct))
    for key, what, lower, pct in (("accuracy", "raises test accuracy", False, True), ("lambda_1", "lowers λ_max", True, False)):
        add(f"At {het}, server-side SWA {what} for each algorithm.",
            _all([_compare(_row(rows, het, f"{m}+SWA"), _row(rows, het, m), key, lower=lower, name_a=f"{m}+SWA", name_b=m, pct=pct)
                  for m in ("FedAvg", "FedSAM", "FedASAM")]))
    if hom is not None:
        add(f"FedAvg is sharper at {het} than at {hom}.",
            _compare(_row(rows, het, "FedAvg"), _row(rows, hom, "FedAvg"), "lambda_1", lower=False,
                     name_a=f"FedAvg {het}", name_b=f"FedAvg {hom}"))
        add(f"FedASAM improves accuracy over FedAvg, most of all at {het}.", _gain_claim(rows, het, hom))
    correlation = _correlation_claim(rows)
    if correlation is not None:
        add("Flatter models generalise better: across all models, λ_max and test accuracy are negatively "
            "rank-correlated (Spearman, p < 0.05).", correlation)
    return claims


def write_claims(claims: Sequence[Claim], path: str | os.PathLike[str], *, seeds: int = 1) -> list:
    """A Markdown table of the verdicts (claim, verdict, reason, evidence); returns the file written (in a list)."""
    from pathlib import Path

    lines = ["| claim (Caldarola et al., ECCV 2022) | verdict here | reason | evidence |", "|---|---|---|---|"]
    lines += [f"| {c.text} | **{c.verdict}** | {c.reason} | {c.evidence} |" for c in claims]
    lines += ["", "Verdicts: held / did not hold when the 95% t-interval of the difference, runs paired by seed, excludes 0 "
              "on the claimed / the other side; inconclusive when it holds 0, or when a run an accuracy claim rests on "
              "was still rising (fedtrain.convergence); not measured when a run is missing."]
    if seeds == 1:
        lines += ["", "One seed per run: a difference between two runs is not tested against seed-to-seed noise "
                  "(rerun with `--seeds N` to get the spread)."]
    atomic_write_text(path, "\n".join(lines) + "\n")
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
