"""Benchmark: ``HessianOperator.matmat`` batched (k products per batch in one vectorised call) vs a loop of k ``matvec``.

The paper's CNN (seeded initialisation, eval mode) on a Fashion-MNIST or CIFAR-10(-shaped) train
subset in batches of 256, on ``--device``, for both product paths of the operator: the cached
first-order graph (the default up to ``CACHE_MAX_EXAMPLES`` samples) and the recomputed
forward-over-reverse product (the default above). Each timing is the best of ``--repeats`` runs, the
two methods interleaved so that a busy machine slows both alike, bracketed by
``torch.cuda.synchronize`` on a GPU; the error column is ``||batched - loop|| / ||loop||`` (float32
products), so a fast but wrong result shows. The memory column is the process's peak RSS on the CPU
and the peak allocated GPU memory on CUDA. Not a test.

    .venv/bin/python bench/bench_matmat.py                        # 256 and 2048 samples, k = 5 and 10, 1 thread
    .venv/bin/python bench/bench_matmat.py --samples 256 --columns 5 --repeats 1   # a smoke run
    python bench/bench_matmat.py --device cuda --dataset cifar10 --data-dir runs/cifar-shaped   # is batched faster on a GPU?
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.device import device_record, resolve_device, synchronize
from fedtrain.io import atomic_write_text
from fedtrain.models import build_model
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.operator import HessianOperator, split_batches

from bench_hessian import emit  # the sibling script: bench/ is on sys.path when run as a script


def best_times(calls: dict[str, Callable[[], torch.Tensor]], repeats: int,
               device: torch.device) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """The best wall time of each call over ``repeats`` interleaved rounds (device work included), and each call's last result."""
    times = {name: float("inf") for name in calls}
    results: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for name, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            results[name] = call()
            synchronize(device)
            times[name] = min(times[name], time.perf_counter() - start)
    return times, results


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dataset", choices=["fashion-mnist", "cifar10"], default="fashion-mnist")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the dataset is (CIFAR-10: see bench/cifar_shaped.py)")
    parser.add_argument("--samples", type=int, nargs="+", default=[256, 2048], help="data subset sizes")
    parser.add_argument("--columns", type=int, nargs="+", default=[5, 10], help="k, the columns of V")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per method (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/matmat.txt (CPU), matmat-cuda.txt (GPU)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    out = args.out or Path(__file__).parent / "results" / ("matmat.txt" if device.type == "cpu" else f"matmat-{device.type}.txt")
    torch.set_num_threads(args.threads)
    record = device_record(device)
    lines: list[str] = []
    emit(lines, f"# bench_matmat.py --device {args.device} --dataset {args.dataset} --samples {' '.join(map(str, args.samples))} "
                f"--columns {' '.join(map(str, args.columns))} --batch-size {args.batch_size} --repeats {args.repeats} "
                f"--threads {args.threads}; {record['device']} ({record['name']}), torch {torch.__version__}, CUDA {record['cuda']}, "
                f"{torch.get_num_threads()} threads, best of {args.repeats} interleaved runs")
    dataset = load_dataset(args.dataset, args.data_dir)
    model = build_model("cnn", input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=args.seed).eval()
    memory = "peak GPU GB" if device.type == "cuda" else "max RSS GB"
    emit(lines, f"{'samples':>7} {'path':<15} {'k':>3} {'loop s':>8} {'batched s':>9} {'loop/batched':>12} {'rel diff':>9} {memory:>11}")
    for num_examples in args.samples:
        inputs, labels = evaluation_tensors(dataset, "train", num_examples, args.seed)
        batches = split_batches(inputs.to(device), labels.to(device), args.batch_size)
        for path, cache_graph in (("cached graph", True), ("fwd-rev", False)):
            operators = {method: HessianOperator(model, cross_entropy, batches, cache_graph=cache_graph, matmat_method=method,
                                                 device=device) for method in ("loop", "batched")}
            for k in args.columns:
                matrix = torch.randn(operators["loop"].dim, k, generator=torch.Generator().manual_seed(args.seed),
                                     dtype=torch.float64).to(device)
                times, results = best_times({m: (lambda op=op: op.matmat(matrix)) for m, op in operators.items()}, args.repeats, device)
                diff = float((results["batched"] - results["loop"]).norm() / results["loop"].norm())
                emit(lines, f"{num_examples:>7} {path:<15} {k:>3} {times['loop']:8.2f} "
                            f"{times['batched']:9.2f} {times['loop'] / times['batched']:12.2f} {diff:9.1e} {peak_memory_gb(device):11.1f}")
            del operators
    atomic_write_text(out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
