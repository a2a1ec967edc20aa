"""Sharpness tracking on real runs: cost per check and overhead per run, the lambda_max curves, and (with untracked twins) wall times.

Reads runs trained by ``bench/track_sharpness.sh`` (``--track-sharpness 10``), writes ``OUT/tracking.json`` (per
run: every check's round, lambda_max, products, seconds, warm start, test accuracy, lr; totals: checks' seconds,
wall seconds, overhead = checks' seconds / (wall seconds - checks' seconds), i.e. what tracking adds to the same
run without it) and the figure ``OUT/tracking.png``/``.pdf`` (landscape.plots.sharpness). The overhead is measured
inside each run (the checks and the rounds timed in the same process, under the same load), so it holds on a
loaded machine better than two wall times; untracked twins named ``<algorithm>-plain`` are compared too when present.
The first line printed and the JSON's ``command`` say how to rerun it; ``loadavg`` is recorded.

Usage::

    bench/track_sharpness.sh fedavg fedsam          # runs/tracking/<algorithm>-tracked (PLAIN=1: also -plain)
    .venv/bin/python bench/tracking_overhead.py runs/tracking --out figures/sharpness
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fedtrain.io import write_json
from landscape.plots.sharpness import plot_sharpness_during_training, sharpness_series


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder of <algorithm>-tracked (and -plain) runs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", *sys.argv])
    print(command)
    result: dict = {"command": command, "loadavg": os.getloadavg(), "runs": {}}
    curves = {}
    for run in sorted(args.runs.glob("*-tracked")):
        rows, summary = _rows(run), json.loads((run / "summary.json").read_text())
        s = sharpness_series(rows)
        checks = sum(s["seconds"])
        wall = summary["wall_seconds"]
        entry = {"config": json.loads((run / "config.json").read_text())["observers"], "checks": len(s["round"]),
                 "series": s, "checks_seconds": checks, "wall_seconds": wall, "overhead": checks / (wall - checks),
                 "products_per_check": sum(s["products"]) / len(s["products"]),
                 "seconds_per_product": checks / sum(s["products"]), "final_accuracy": summary["final_accuracy"]}
        plain = run.with_name(run.name.replace("-tracked", "-plain"))
        if (plain / "summary.json").is_file():
            entry["plain_wall_seconds"] = json.loads((plain / "summary.json").read_text())["wall_seconds"]
        result["runs"][run.name] = entry
        curves[f"{summary['algorithm']} alpha={json.loads((run / 'config.json').read_text())['alpha']:g} ({run.name})"] = rows
        print(f"{run.name}: {entry['checks']} checks, {entry['products_per_check']:.1f} products and "
              f"{checks / entry['checks']:.1f} s a check, {checks:.0f} s of {wall:.0f} s: tracking adds {100 * entry['overhead']:.1f}%"
              + (f" (untracked twin {entry['plain_wall_seconds']:.0f} s)" if "plain_wall_seconds" in entry else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "tracking.json", result)
    for path in plot_sharpness_during_training(curves, args.out / "tracking", title="lambda_max of the global model while it trains (quick preset)"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
