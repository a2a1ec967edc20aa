"""What ``landscape reproduce --preset paper-cifar10`` costs on a device, measured stage by stage and extrapolated.

CIFAR-10 cannot be fetched on our machines, so the stages run on CIFAR-10-shaped data
(``bench/cifar_shaped.py``: same format, shapes and sizes) with the preset's own settings:

* training: each algorithm of the preset (FedAvg, FedSAM, FedASAM) for ``--rounds`` timed rounds after
  one warm-up round; the last round also evaluates on the 10,000 test images and writes a checkpoint,
  which gives the cost of an evaluation. A paper run is 10,000 rounds with an evaluation every 100 rounds
  and at each of the last 100 (199 evaluations). Per split the reproduction trains 3 plain runs and 3 SWA
  runs branched at 75% (0.25 of a run each);
* Hessian: one full analysis with the preset's ``HessianSettings`` (2,048 samples, top-5, trace, SLQ
  density) on the short FedAvg run's checkpoint, per final model (12). A trained model may need a
  different number of Lanczos steps than this barely trained one: the figure is an estimate;
* surface: the preset's ``SurfaceSettings`` (train and test splits, 10,000 samples each) on a coarse
  ``--surface-steps`` grid, timed per point and scaled to 41 x 41, per final model; the plane (train only)
  likewise, one per split.

It prints the measured unit costs and the extrapolated total per stage. Not a test; nothing here is a result.

    python bench/cifar_shaped.py --out runs/cifar-shaped
    python bench/paper_cost.py --device cuda --data-dir runs/cifar-shaped --out bench/results/paper-cost-gpu.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fedtrain.config import preset_config
from fedtrain.device import device_record, resolve_device, synchronize
from fedtrain.io import atomic_write_text
from fedtrain.run import RunPaths, train
from landscape.hessian.analysis import analyze_checkpoint
from landscape.report.presets import REPRODUCE_PRESETS
from landscape.surface.api import surface_for_checkpoint

PAPER = REPRODUCE_PRESETS["paper-cifar10"]
RUN_EQUIVALENTS_PER_SPLIT = 3 * 1.25  # three plain runs, three SWA twins from 75%
FINAL_MODELS_PER_SPLIT = 6


def time_training(algorithm: str, rounds: int, device: str, data_dir: Path, out: Path) -> tuple[float, float, Path]:
    """Median round time, evaluation+checkpoint time, and the final checkpoint of a short paper-shaped run."""
    config = preset_config("paper-cifar10", algorithm=algorithm, rounds=rounds + 1, eval_every=rounds + 1, eval_last=0,
                           last_k=1, checkpoint_every=0, data_dir=str(data_dir), device=device)
    stamps: list[float] = []
    resolved = resolve_device(device)

    def stamp(_event: dict) -> None:
        synchronize(resolved)
        stamps.append(time.perf_counter())

    train(config, out, overwrite=True, progress=stamp)
    per_round = [b - a for a, b in zip(stamps[:-2], stamps[1:-1])]
    round_time = statistics.median(per_round)
    last = stamps[-1] - stamps[-2]
    return round_time, max(last - round_time, 0.0), RunPaths(out).final


def time_call(device: str, action) -> float:
    """Wall time of ``action()`` with the device's queue drained on both sides."""
    resolved = resolve_device(device)
    synchronize(resolved)
    start = time.perf_counter()
    action()
    synchronize(resolved)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, required=True, help="bench/cifar_shaped.py's --out")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds per algorithm (after one warm-up)")
    parser.add_argument("--surface-steps", type=int, default=5, help="coarse grid per axis, timed and scaled to 41 x 41")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    paper_config = preset_config("paper-cifar10")
    rounds, evaluations = paper_config.rounds, paper_config.rounds // paper_config.eval_every + paper_config.eval_last - 1
    lines = [f"# bench/paper_cost.py --device {device} --rounds {args.rounds} --surface-steps {args.surface_steps}",
             f"# {device_record(resolve_device(device))}",
             f"# a paper run: {rounds} rounds, {evaluations} evaluations on 10,000 test images; "
             f"per split {RUN_EQUIVALENTS_PER_SPLIT} run-equivalents per algorithm set, {FINAL_MODELS_PER_SPLIT} final models"]

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    for line in lines:
        print(line, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        training_total = 0.0
        checkpoint = None
        for algorithm in ("fedavg", "fedsam", "fedasam"):
            round_time, eval_time, final = time_training(algorithm, args.rounds, device, args.data_dir, tmp_path / algorithm)
            run_seconds = rounds * round_time + evaluations * eval_time
            training_total += run_seconds * 1.25 * len(PAPER.splits)
            emit(f"train {algorithm:8s} {round_time * 1e3:8.1f} ms/round  evaluation+checkpoint {eval_time:6.2f} s  "
                 f"-> one 10,000-round run {run_seconds / 3600:6.2f} h")
            checkpoint = checkpoint or final
        hours = {"training": training_total / 3600}
        emit(f"training, all {len(PAPER.splits) * 6} runs (SWA twins from 75%): {hours['training']:.2f} h")

        hessian = dataclasses.replace(PAPER.hessian, device=device)
        seconds = time_call(device, lambda: analyze_checkpoint(checkpoint, hessian, data_dir=args.data_dir))
        models = FINAL_MODELS_PER_SPLIT * len(PAPER.splits)
        hours["hessian"] = models * seconds / 3600
        emit(f"hessian  {seconds:8.1f} s per model ({hessian.num_examples} samples, top-{hessian.top_k}, "
             f"trace {hessian.trace_matvecs}, SLQ {hessian.density_probes}x{hessian.density_steps}) "
             f"-> {models} models {hours['hessian']:.2f} h")

        full_points = PAPER.surface.steps ** 2
        coarse = dataclasses.replace(PAPER.surface, steps=args.surface_steps, device=device)
        seconds = time_call(device, lambda: surface_for_checkpoint(checkpoint, coarse, data_dir=args.data_dir,
                                                                   out=tmp_path / "surface"))
        per_point = seconds / args.surface_steps ** 2
        hours["surface"] = models * full_points * per_point / 3600
        emit(f"surface  {per_point:8.3f} s per point ({'+'.join(coarse.splits)}, {coarse.num_examples} samples each) "
             f"-> {PAPER.surface.steps}x{PAPER.surface.steps} {full_points * per_point / 60:.1f} min per model, "
             f"{models} models {hours['surface']:.2f} h")
        plane_share = len(PAPER.plane.splits) / len(PAPER.surface.splits)
        hours["planes"] = len(PAPER.splits) * PAPER.plane.steps ** 2 * per_point * plane_share / 3600
        emit(f"planes   {len(PAPER.splits)} x {PAPER.plane.steps}x{PAPER.plane.steps} (train only) -> {hours['planes']:.2f} h")
        emit(f"total    {sum(hours.values()):.2f} h  (" + ", ".join(f"{k} {v:.2f} h" for k, v in hours.items()) + ")")
    if args.out is not None:
        atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
