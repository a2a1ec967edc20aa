"""Benchmark of --nproc: a Hessian analysis and a loss surface with their work split over 2 processes vs 1, on this machine.

The quick preset's CNN (its seeded initial weights, saved as a checkpoint) on real Fashion-MNIST: the Hessian
analysis (top-3 eigenvalues, Hutch++ trace with 15 products, SLQ 2 x 20, on ``--samples`` training samples in 4
batches) with :func:`landscape.hessian.distributed.analyze_checkpoint_parallel`, and a 7 x 7 random-direction
surface on ``--samples`` test samples (4 points per pass) with :func:`landscape.surface.distributed.surface_for_checkpoint_parallel`,
each with ``nproc`` 1 and 2, every process on one thread. The wall times include spawning the ranks (Python and
torch start-up in each) and building the data on every rank. Correctness columns: the largest relative
eigenvalue difference and the largest surface difference between the two. The first output line is the command.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_nproc.py --out bench/results/nproc-cpu.txt
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fedtrain._seeds import derive_seed
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.config import preset_config
from fedtrain.data import load_dataset
from fedtrain.io import atomic_write_text
from fedtrain.models import build_model
from landscape.hessian.distributed import analyze_checkpoint_parallel
from landscape.settings import HessianSettings, SurfaceSettings
from landscape.surface.distributed import surface_for_checkpoint_parallel


def emit(lines: list[str], text: str) -> None:
    """Append a line to the output and show it at once."""
    lines.append(text)
    print(text, flush=True)


def quick_checkpoint(folder: Path, data_dir: str | None) -> Path:
    """The quick preset's CNN at its seeded initial weights, as a checkpoint of Fashion-MNIST."""
    config = preset_config("quick", data_dir=data_dir)
    dataset = load_dataset(config.dataset, config.data_dir)
    kwargs = {"input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes}
    model = build_model(config.model, seed=derive_seed(config.seed, "model-init"), **kwargs)
    path = folder / "quick-init.pt"
    save_checkpoint(Checkpoint(model_name=config.model, model_kwargs=kwargs, weights=model.state_dict(), dataset=config.dataset,
                               data_dir=data_dir), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: /usr/share/datasets)")
    parser.add_argument("--samples", type=int, default=256, help="samples of the Hessian (4 batches) and of the surface")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines: list[str] = []
    emit(lines, "$ OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset") + " " + shlex.join([sys.executable, *sys.argv]))
    emit(lines, f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs, shared with other jobs)")
    hessian = HessianSettings(num_examples=args.samples, batch_size=args.samples // 4, top_k=3, trace_matvecs=15, density_probes=2,
                               density_steps=20, device="cpu")
    surface = SurfaceSettings(steps=7, splits=("test",), num_examples=args.samples, points_per_pass=4, batch_size=args.samples, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = quick_checkpoint(Path(tmp), args.data_dir)
        reports, surfaces, times = {}, {}, {}
        for n in (1, 2):
            start = time.perf_counter()
            reports[n] = analyze_checkpoint_parallel(path, hessian, nproc=n, threads=1)
            times[("hessian", n)] = time.perf_counter() - start
            start = time.perf_counter()
            surfaces[n] = surface_for_checkpoint_parallel(path, surface, nproc=n, threads=1, out=Path(tmp) / f"surface{n}")
            times[("surface", n)] = time.perf_counter() - start
    one, two = np.array(reports[1].eigenvalues), np.array(reports[2].eigenvalues)
    surface_diff = max(float(np.nanmax(np.abs(surfaces[1].values[k] - surfaces[2].values[k]))) for k in surfaces[1].values)
    emit(lines, f"hessian: {args.samples} samples in 4 batches, {reports[1].hvps['total']} products (top-3, Hutch++ 15, SLQ 2 x 20), "
                "cnn of the quick preset")
    emit(lines, f"  nproc 1: {times[('hessian', 1)]:.1f} s   nproc 2: {times[('hessian', 2)]:.1f} s   speed-up {times[('hessian', 1)] / times[('hessian', 2)]:.2f}x")
    emit(lines, f"  max |lambda_2proc - lambda_1proc| / |lambda|: {float(np.max(np.abs(two - one) / np.abs(one))):.2g}; "
                f"trace {reports[1].trace['estimate']:.6g} vs {reports[2].trace['estimate']:.6g}")
    emit(lines, f"surface: 7 x 7 random directions, {args.samples} test samples, 4 points per pass (13 chunks)")
    emit(lines, f"  nproc 1: {times[('surface', 1)]:.1f} s   nproc 2: {times[('surface', 2)]:.1f} s   speed-up {times[('surface', 1)] / times[('surface', 2)]:.2f}x")
    emit(lines, f"  max |surface_2proc - surface_1proc|: {surface_diff:.3g}")
    emit(lines, f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.out is not None:
        atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
