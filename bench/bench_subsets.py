"""How large a Hessian sample? lambda_1 and the trace over K disjoint seeded data subsets, per subset size and model.

For each final checkpoint of a reproduction's heterogeneous runs (FedAvg, FedSAM, FedASAM, with and without
SWA) and each subset size ``n``, :func:`landscape.hessian.analysis.analyze_checkpoint` with
``HessianSettings(num_examples=n, subsets=K)`` analyses K disjoint seeded subsets of ``n`` training samples
(the first is the quick reproduction's own subset of that size) and reports the across-subset mean of
lambda_1 and of the Hutch++ trace with their standard errors ``s / sqrt(K)``. The table prints them and,
the question this bench answers, the ratio of the standard error of the FedAvg-minus-FedASAM difference
(``sqrt(se_avg^2 + se_asam^2)``) to that difference (SWA models against SWA models): below about 1/3 the
difference is resolved at that subset size, near 1 or above it is not. The mean Hutch++ standard error of one
subset (``est se``) shows how much of the trace's spread is the estimator's rather than the data's.

Each (model, size) cell is saved as it finishes (``--cache``, the report's JSON), so an interrupted run
continues and the table can be printed from what is done; cells not computed print ``not measured``.
The first output line is the command that produced it.

Usage (one thread, CPU; the quick reproduction's checkpoints are only read)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_subsets.py --runs runs/quick/runs/heterogeneous \\
        --cache bench/results/hessian-subsets --out bench/results/hessian-subsets-cpu.txt
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from fedtrain.io import atomic_write_text, read_json
from landscape.hessian.analysis import analyze_checkpoint
from landscape.settings import HessianSettings

MODELS = ("fedavg", "fedasam", "fedsam", "fedavg-swa", "fedasam-swa", "fedsam-swa")
PAIRS = {"fedavg": "fedasam", "fedavg-swa": "fedasam-swa"}  # the difference each row is compared with
# every comparison the reproduction's claims make: client optimiser against FedAvg, SWA against its twin
COMPARISONS = (("fedavg", "fedasam"), ("fedavg", "fedsam"), ("fedavg-swa", "fedasam-swa"), ("fedavg-swa", "fedsam-swa"),
               ("fedavg", "fedavg-swa"), ("fedsam", "fedsam-swa"), ("fedasam", "fedasam-swa"))


def settings_for(args: argparse.Namespace, size: int) -> HessianSettings:
    """The analysis of one cell: lambda_1 and the trace on ``args.subsets`` subsets of ``size``, no density."""
    return HessianSettings(num_examples=size, subsets=args.subsets, top_k=1, tol=args.tol, trace=args.trace_matvecs > 0,
                           trace_matvecs=max(args.trace_matvecs, 3), density=False, batch_size=args.batch_size, seed=args.seed, device="cpu")


def cell(args: argparse.Namespace, model: str, size: int) -> dict | None:
    """The report of one (model, size), from the cache (with the trace when there is one) or computed and cached;
    ``None`` when ``--table-only`` and not cached."""
    stem = Path(args.cache) / f"{model}-n{size}-k{args.subsets}"
    for cached in (stem.with_name(stem.name + ".json"), stem.with_name(stem.name + "-notrace.json")):
        if cached.exists():
            return read_json(cached, kind="bench cell", fix="delete it to recompute")
    if args.table_only:
        return None
    path = stem.with_name(stem.name + ("" if args.trace_matvecs else "-notrace") + ".json")
    start = time.perf_counter()
    report = analyze_checkpoint(Path(args.runs) / model / "seed0" / "checkpoints" / "final.pt", settings_for(args, size)).to_dict()
    report["bench_wall_s"] = time.perf_counter() - start
    atomic_write_text(path, json.dumps(report, indent=1))
    print(f"  {model} n={size}: {report['bench_wall_s']:.0f} s, {report['hvps']['total']} products", file=sys.stderr, flush=True)
    return report


def lambda_1(report: dict) -> tuple[float, float]:
    """Mean lambda_1 over the subsets and its standard error."""
    return report["eigenvalues"][0], report["eigenvalues_stderr"][0]


def trace(report: dict) -> tuple[float, float]:
    """Mean Hutch++ trace over the subsets and its across-subset standard error (``None`` when not measured)."""
    return (report["trace"]["estimate"], report["trace"]["subset_stderr"]) if report["trace"] else None


def ratio(rows: dict[str, dict | None], model: str, quantity) -> str:
    """``se(difference) / |difference|`` of ``model`` against its pair, when both are measured."""
    other = PAIRS.get(model)
    if other is None or rows.get(model) is None or rows.get(other) is None:
        return ""
    if quantity(rows[model]) is None or quantity(rows[other]) is None:
        return ""
    (a, sa), (b, sb) = quantity(rows[model]), quantity(rows[other])
    return f"{math.hypot(sa, sb) / abs(a - b):.2f}" if a != b else "inf"


def comparisons(args: argparse.Namespace, cells: dict[tuple[str, int], dict | None]) -> list[str]:
    """Each claimed comparison's lambda_1 difference, its standard error and their ratio, per subset size."""
    lines = ["", "lambda_1 differences (A - B, mean over the subsets +- sqrt(se_A^2 + se_B^2)); se/|diff| below ~1/3: resolved at that n",
             f"{'n':>5} {'A - B':<26} {'difference':>18} {'se/|diff|':>9}"]
    for size in args.sizes:
        for a, b in COMPARISONS:
            ra, rb = cells.get((a, size)), cells.get((b, size))
            if ra is None or rb is None:
                continue
            (va, sa), (vb, sb) = lambda_1(ra), lambda_1(rb)
            se = math.hypot(sa, sb)
            lines.append(f"{size:>5} {a + ' - ' + b:<26} {f'{va - vb:+.2f} +- {se:.2f}':>18} "
                         f"{(se / abs(va - vb) if va != vb else math.inf):>9.2f}")
    return lines


def table(args: argparse.Namespace, cells: dict[tuple[str, int], dict | None]) -> list[str]:
    """The printed table, one line per (size, model)."""
    lines = [f"{'n':>5} {'model':<12} {'lambda_1 mean +- se':>22} {'se/diff':>8} {'trace mean +- se':>22} {'se/diff':>8} "
             f"{'est se':>7} {'lambda_1 per subset':<36} {'products':>8} {'wall s':>7}"]
    for size in args.sizes:
        rows = {model: cells.get((model, size)) for model in args.models}
        for model in args.models:
            r = rows[model]
            if r is None:
                lines.append(f"{size:>5} {model:<12} {'not measured':>22}")
                continue
            l1, l1se = lambda_1(r)
            per = " ".join(f"{s[0]:.1f}" for s in r["subsets"]["eigenvalues"])
            if trace(r) is None:
                trace_cells = f"{'not measured':>22} {'':>8} {'':>7}"
            else:
                tr, trse = trace(r)
                est_se = sum(r["subsets"]["trace_stderrs"]) / len(r["subsets"]["trace_stderrs"])
                trace_cells = f"{f'{tr:.1f} +- {trse:.1f}':>22} {ratio(rows, model, trace):>8} {est_se:>7.1f}"
            lines.append(f"{size:>5} {model:<12} {f'{l1:.2f} +- {l1se:.2f}':>22} {ratio(rows, model, lambda_1):>8} "
                         f"{trace_cells} {per:<36} "
                         f"{r['hvps']['total']:>8} {r.get('bench_wall_s', float('nan')):>7.0f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/quick/runs/heterogeneous", help="folder of <model>/seed0/checkpoints/final.pt")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model folders")
    parser.add_argument("--sizes", default="128,512,1024", help="comma-separated subset sizes")
    parser.add_argument("--subsets", type=int, default=5, help="disjoint subsets per size (K)")
    parser.add_argument("--tol", type=float, default=1e-2, help="Lanczos relative residual tolerance of lambda_1")
    parser.add_argument("--trace-matvecs", type=int, default=12, help="Hutch++ products per subset (0: lambda_1 only)")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per product pass (memory only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets (and of subset 1's estimators)")
    parser.add_argument("--cache", default="bench/results/hessian-subsets", help="folder of the per-cell reports")
    parser.add_argument("--table-only", action="store_true", help="print the table from the cache, compute nothing")
    parser.add_argument("--out", default=None, help="also write the output here")
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    cells = {(model, size): cell(args, model, size) for size in args.sizes for model in args.models}
    load = os.getloadavg()
    done = [c for c in cells.values() if c is not None]
    lines = [
        "$ OMP_NUM_THREADS=1 " + shlex.join([sys.executable.split("/")[-1], *sys.argv]),
        f"K = {args.subsets} disjoint seeded subsets of n training samples (seed {args.seed}; the first is the reproduction's own "
        f"subset of that size); lambda_1 by Lanczos (top-1, tol {'/'.join(sorted({str(c['config']['tol']) for c in done}))}), trace by "
        f"Hutch++ ({'/'.join(sorted({str(c['config']['trace_matvecs']) for c in done if c['trace']})) or 'no'} products a subset; "
        "'not measured' where a cell was run with --trace-matvecs 0, lambda_1 only, for time); "
        "mean +- se: across-subset mean and s/sqrt(K); se/diff: sqrt(se_a^2 + se_b^2) / |mean_a - mean_b| against FedASAM "
        "(SWA against SWA); est se: the mean Hutch++ standard error of one subset; wall s: CPU, 1 thread, on the shared "
        f"2-core machine, loaded (load average at the end {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}).",
        *table(args, cells),
        *comparisons(args, cells),
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
