"""Benchmark of cohort-vectorised rounds: round time with ``--cohort sequential`` vs ``vmap`` (and opt-in ``torch.compile``), one process.

For each shape (a preset's clients/steps: ``quick`` = Fashion-MNIST, K=10 clients x 3 steps of 32;
``paper-cifar10`` = CIFAR-10-shaped data, K=5 x 8 steps of 64 with 500 samples a client) and each algorithm,
the same rounds are run from the same server state on the same inputs (same sampled clients, same batches
and augmentation) by :func:`fedtrain.round.federated_round` in each mode, the modes alternating round by
round so that other load on the machine hits both alike. Round 0 of each mode is a warm-up (for
``vmap+compile`` it includes the compilation, printed apart). It prints the median and fastest round time of
each mode, the ratio sequential/vmap (> 1: vmap is faster; the issue's GPU goal is >= 3x for FedSAM on the
paper-cifar10 shape), the preset's rounds at that rate (training only: the paper's 10,000 FedSAM rounds
should take < 30 min on one GPU), and, as the correctness column, the largest
|difference| between the global weights after the same round in each mode (float32 rounding: see
tests/fedtrain/test_cohort.py). The first output line is the command that produced it.

Usage (CIFAR-10 cannot be fetched here; ``bench/cifar_shaped.py`` writes data of its format and shapes)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_cohort.py --device cpu --threads 1 --out bench/results/cohort-cpu.txt
    python bench/bench_cohort.py --device cuda --compile --out bench/results/cohort-cuda.txt
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from fedtrain._seeds import derive_seed
from fedtrain.client import ClientShard
from fedtrain.config import TrainConfig, preset_config
from fedtrain.data import load_dataset
from fedtrain.device import device_record, resolve_device, synchronize
from fedtrain.io import atomic_write_text
from fedtrain.models import build_model
from fedtrain.partition import make_partition
from fedtrain.round import RoundData, federated_round
from fedtrain.server import ServerState

sys.path.insert(0, str(Path(__file__).parent))
from cifar_shaped import write_cifar_shaped  # noqa: E402

SHAPES = ("quick", "paper-cifar10")


def emit(lines: list[str], text: str) -> None:
    """Append a line to the output and show it at once (a CPU run takes minutes)."""
    lines.append(text)
    print(text, flush=True)


def round_inputs(config: TrainConfig, device: torch.device) -> tuple[RoundData, ServerState, str]:
    """The run's round data (index shards on the device, scratch model) and its initial server state, as ``train`` builds them."""
    dataset = load_dataset(config.dataset, config.data_dir)
    partition = make_partition(dataset.train_labels, scheme=config.partition, num_clients=config.num_clients, alpha=config.alpha,
                               seed=config.seed, samples_per_client=config.samples_per_client, dataset=config.dataset,
                               num_classes=dataset.num_classes)
    on_device = dataset.to(device)
    normalize = on_device.normalizer(device)
    shards = [ClientShard(on_device.train_images, on_device.train_labels, normalize, indices=idx.to(device))
              for idx in partition.client_indices]
    kwargs = {"input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes}
    worker = build_model(config.model, seed=0, **kwargs).to(device)
    initial = build_model(config.model, seed=derive_seed(config.seed, "model-init"), **kwargs)
    state = ServerState(round=0, params={k: v.detach().clone().to(device) for k, v in initial.state_dict().items()})
    data = RoundData(shards=shards, augment=dataset.augmentation == "crop-flip", worker=worker)
    return data, state, f"{dataset.name} {tuple(dataset.input_shape)} ({dataset.source})"


def timed_round(config: TrainConfig, data: RoundData, state: ServerState, round_index: int, device: torch.device) -> tuple[float, ServerState]:
    """Wall time of one round (device synchronised) and its result."""
    synchronize(device)
    start = time.perf_counter()
    new, _ = federated_round(ServerState(round=round_index, params=state.params), config, data, round_index)
    synchronize(device)
    return time.perf_counter() - start, new


def bench_shape(shape: str, args: argparse.Namespace, device: torch.device, lines: list[str]) -> None:
    """Time every mode on one shape, each algorithm, alternating modes round by round."""
    overrides: dict = {"device": args.device}
    if shape == "paper-cifar10":
        overrides["data_dir"] = str(write_cifar_shaped(args.data_dir).parent)
    base = preset_config(shape, **overrides)
    data, state, source = round_inputs(base, device)
    steps = -(-base.samples_per_client // base.batch_size) * base.local_epochs
    emit(lines, f"shape {shape}: {source}, model {base.model}, K={base.clients_per_round} clients x {steps} steps of "
                 f"{base.batch_size} ({base.samples_per_client} samples a client), augmentation {data.augment}")
    modes = {"sequential": dict(cohort="sequential"), "vmap": dict(cohort="vmap")}
    if args.compile:
        modes["vmap+compile"] = dict(cohort="vmap", cohort_compile=True)
    for algorithm in args.algorithms:
        configs = {mode: base.replace(algorithm=algorithm, **changes) for mode, changes in modes.items()}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        warm = {mode: timed_round(config, data, state, 0, device)[0] for mode, config in configs.items()}
        times: dict[str, list[float]] = {mode: [] for mode in configs}
        diff = 0.0
        for t in range(1, args.rounds + 1):
            order = list(configs) if t % 2 else list(reversed(configs))
            results = {}
            for mode in order:
                seconds, results[mode] = timed_round(configs[mode], data, state, t, device)
                times[mode].append(seconds)
            diff = max(diff, *(float((results[m].params[k] - results["sequential"].params[k]).abs().max())
                               for m in results for k in state.params))
        seq = statistics.median(times["sequential"])
        for mode, values in times.items():
            median = statistics.median(values)
            extra = (f"  first round (warm-up{', incl. compilation' if 'compile' in mode else ''}) {warm[mode]:.2f} s; "
                     f"{base.rounds:,} rounds of training ~ {base.rounds * median / 60:.1f} min")
            emit(lines, f"  {algorithm:8s} {mode:13s} round median {median * 1e3:9.1f} ms  fastest {min(values) * 1e3:9.1f} ms  "
                         f"sequential/{mode} {seq / median:5.2f}x{extra}")
        if device.type == "cuda":
            emit(lines, f"  {algorithm:8s} peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (all modes)")
        emit(lines, f"  {algorithm:8s} correctness: max |w_mode - w_sequential| after the same round = {diff:.2e} "
                     f"({args.rounds} rounds, each from the same state)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES), help="preset shapes to time (default both)")
    parser.add_argument("--algorithms", nargs="+", choices=("fedavg", "fedsam", "fedasam"), default=["fedavg", "fedsam", "fedasam"])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per mode and algorithm, after one warm-up (default 3)")
    parser.add_argument("--compile", action="store_true", help="also time vmap with torch.compile of the step")
    parser.add_argument("--data-dir", type=Path, default=Path("runs/cifar-shaped"), help="CIFAR-shaped data (written when missing)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    record = device_record(device)
    lines: list[str] = []
    emit(lines, "$ " + shlex.join([Path(sys.executable).name, *sys.argv]))
    emit(lines, f"device {record['device']} ({record['name']}), torch {record['torch']}, CUDA {record['cuda']}"
                 + (f", {record['threads']} CPU threads" if "threads" in record else "")
                 + f"; load average before the run {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    for shape in args.shapes:
        bench_shape(shape, args, device, lines)
    emit(lines, f"load average after the run {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
