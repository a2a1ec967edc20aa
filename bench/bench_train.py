"""Benchmark of federated training rounds on a device: rounds/s per algorithm, overhead over a bare loop, FedSAM/FedAvg cost, GPU use.

Runs, in one process, on one device and on the same inputs (a preset's clients/rounds shape on its dataset):

* ``fedtrain.run.train`` for FedAvg, FedSAM and FedASAM, timing every round through the progress callback
  (the device is synchronised before each time stamp; evaluation and checkpoints are pushed to the last
  round, which is timed apart as "evaluation + checkpoint");
* a bare loop doing the same local steps on the same device (same clients, same batches and augmentation,
  same optimiser step, SAM's two passes) with nothing around it: no state-dict loading, no deltas, no
  aggregation, no loss bookkeeping, no hooks.

It prints the median round time of each, the overhead ratio (goal <= 1.10), the FedSAM/FedAvg and
FedASAM/FedAvg per-round ratios (floor about 2: two passes per step; goal <= 2.1), the projected time of the
preset's full run (all its rounds and evaluations), and, as a correctness check next to the timings, the
largest difference between one client's weights after ``client_update`` and after the bare loop (0 means the
bare loop does exactly the same work). On CUDA it also prints the GPU utilisation sampled during the timed
rounds (``torch.cuda.utilization``, else ``nvidia-smi``; "n/a" when neither answers) and the peak GPU memory.
The first output line is the command that produced it.

Usage (CIFAR-10 cannot be fetched here; ``bench/cifar_shaped.py`` writes data of its format, shapes and sizes)::

    .venv/bin/python bench/cifar_shaped.py --out runs/cifar-shaped
    .venv/bin/python bench/bench_train.py --device cuda --dataset cifar10 --data-dir runs/cifar-shaped \\
        --preset paper-cifar10 --rounds 12 --out bench/results/train-cuda.txt
    .venv/bin/python bench/bench_train.py --device cpu --preset quick --threads 2
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from fedtrain._seeds import derive_seed, derived_generator
from fedtrain.client import ClientConfig, ClientShard, _batches, client_update
from fedtrain.config import PRESETS, TrainConfig, preset_config
from fedtrain.data import ImageDataset, load_dataset
from fedtrain.device import device_record, resolve_device, synchronize
from fedtrain.io import atomic_write_text
from fedtrain.models import build_model
from fedtrain.partition import make_partition
from fedtrain.round import client_generator
from fedtrain.run import train
from fedtrain.sam import asam_epsilon, sam_epsilon, weight_mask
from fedtrain.server import select_clients

ALGORITHMS = ("fedavg", "fedsam", "fedasam")


class UtilisationSampler:
    """GPU utilisation (%) sampled every ``period`` seconds in a background thread, with time stamps."""

    def __init__(self, device: torch.device, period: float = 0.1) -> None:
        self.device, self.period = device, period
        self.samples: list[tuple[float, float]] = []
        self.source = self._pick_source()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pick_source(self) -> str | None:
        if self.device.type != "cuda":
            return None
        try:
            torch.cuda.utilization(self.device)  # needs the NVML bindings (pynvml / nvidia-ml-py)
            return "torch.cuda.utilization"
        except Exception:  # noqa: BLE001 - missing NVML bindings raise ModuleNotFoundError or RuntimeError
            pass
        if shutil.which("nvidia-smi") and self._nvidia_smi() is not None:
            return "nvidia-smi"
        return None

    def _nvidia_smi(self) -> float | None:
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(index)],
                                 capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def _read(self) -> float | None:
        if self.source == "torch.cuda.utilization":
            return float(torch.cuda.utilization(self.device))
        return self._nvidia_smi()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            value = self._read()
            if value is not None:
                self.samples.append((time.perf_counter(), value))

    def __enter__(self) -> UtilisationSampler:
        if self.source is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mean_between(self, start: float, end: float) -> str:
        """Mean utilisation of the samples taken in ``[start, end]``, or "n/a"."""
        inside = [value for stamp, value in self.samples if start <= stamp <= end]
        return f"{statistics.mean(inside):.0f}% ({len(inside)} samples, {self.source})" if inside else "n/a"


def timed_rounds(config: TrainConfig, out: Path, device: torch.device, *,
                 clock: Callable[[], float] = time.perf_counter) -> tuple[list[float], float, tuple[float, float]]:
    """Times of rounds 2..R-1 of ``train``, the last round's time (it evaluates and checkpoints), and the timed window.

    ``clock`` is wall time by default; ``time.process_time`` (this process's CPU time) is steadier on a shared machine.
    """
    stamps: list[float] = []

    def stamp(event: dict) -> None:
        synchronize(device)
        stamps.append(clock())

    train(config, out, overwrite=True, progress=stamp)
    rounds = [b - a for a, b in zip(stamps[:-2], stamps[1:-1])]
    return rounds, stamps[-1] - stamps[-2], (stamps[0], stamps[-2])


def device_shards(dataset: ImageDataset, partition, device: torch.device) -> list[ClientShard]:
    """The clients' shards as ``train`` builds them: index sets into the dataset held once on ``device``."""
    normalize = dataset.normalizer(device)
    return [ClientShard(dataset.train_images, dataset.train_labels, normalize, indices=idx.to(device)) for idx in partition.client_indices]


def bare_rounds(config: TrainConfig, shards: list[ClientShard], model: torch.nn.Module, augment: bool, device: torch.device) -> list[float]:
    """The same local steps as ``train`` with nothing else: per-round wall times (rounds 1..R-2, as timed_rounds)."""
    params = list(model.parameters())
    mask = weight_mask([n for n, _ in model.named_parameters()])
    cfg = ClientConfig(lr=config.lr, batch_size=config.batch_size, local_epochs=config.local_epochs, augment=augment)
    times = []
    for t in range(1, config.rounds - 1):
        synchronize(device)
        start = time.perf_counter()
        for k in select_clients(config.seed, t, config.num_clients, config.clients_per_round):
            opt = torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum)
            for x, y in _batches(shards[k], cfg, client_generator(config.seed, t, k)):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                if config.optimizer != "sgd":
                    with torch.no_grad():
                        grads = [p.grad for p in params]
                        eps = sam_epsilon(grads, config.rho) if config.optimizer == "sam" else asam_epsilon(params, grads, config.rho, config.eta, mask)
                        torch._foreach_add_(params, eps)
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x), y).backward()
                    with torch.no_grad():
                        torch._foreach_sub_(params, eps)
                opt.step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def check_same_work(config: TrainConfig, shard: ClientShard, model_kwargs: dict, augment: bool, device: torch.device) -> float:
    """Max |difference| between our client_update and the bare SGD loop for one client on ``device`` (should be ~0)."""
    init = build_model(config.model, seed=derive_seed(config.seed, "model-init"), **model_kwargs).to(device)
    state = {k: v.clone() for k, v in init.state_dict().items()}
    cfg = ClientConfig(lr=config.lr, batch_size=config.batch_size, weight_decay=config.weight_decay, augment=augment)
    ours = client_update(build_model(config.model, seed=0, **model_kwargs).to(device), state, shard, cfg, derived_generator(0, "check"))
    opt = torch.optim.SGD(init.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for x, y in _batches(shard, cfg, derived_generator(0, "check")):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(init(x), y).backward()
        opt.step()
    return max(float((state[k] + ours.delta[k] - v).abs().max()) for k, v in init.state_dict().items())


def bench_config(args: argparse.Namespace) -> TrainConfig:
    """The preset on the chosen dataset and device, cut to ``--rounds``, evaluating and checkpointing at the last round only."""
    overrides = dict(rounds=args.rounds, eval_every=10_000, eval_last=0, checkpoint_every=0, checkpoint_rounds=(), device=args.device)
    if args.dataset is not None:
        overrides["dataset"] = args.dataset
    if args.data_dir is not None:
        overrides["data_dir"] = str(args.data_dir)
    return preset_config(args.preset, **overrides)


def full_run(config: TrainConfig, round_s: float, eval_s: float) -> tuple[float, int, int]:
    """Projected hours of the preset's full run at these costs, with its numbers of rounds and evaluations."""
    full = preset_config(config.preset or "quick", dataset=config.dataset, data_dir=config.data_dir)
    evaluations = sum(full.evaluates_at(t) for t in range(full.rounds))
    return (full.rounds * round_s + evaluations * eval_s) / 3600, full.rounds, evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="quick", help="the clients/rounds shape (default quick)")
    parser.add_argument("--dataset", choices=("fashion-mnist", "cifar10"), default=None, help="default: the preset's")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder of the dataset (CIFAR: bench/cifar_shaped.py's --out)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per algorithm; the first is warm-up, the last evaluates (>= 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    args = parser.parse_args()
    if args.rounds < 4:
        parser.error("--rounds must be >= 4 (warm-up, timed rounds, last round)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    base = bench_config(args)
    dataset = load_dataset(base.dataset, base.data_dir)
    partition = make_partition(dataset.train_labels, scheme=base.partition, num_clients=base.num_clients, alpha=base.alpha,
                               seed=base.seed, samples_per_client=base.samples_per_client, dataset=base.dataset,
                               num_classes=dataset.num_classes)
    on_device = dataset.to(device)
    shards = device_shards(on_device, partition, device)
    augment = dataset.augmentation == "crop-flip"
    model_kwargs = {"input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes}
    record = device_record(device)

    lines = ["$ " + shlex.join([Path(sys.executable).name, *sys.argv])]
    lines.append(f"bench_train: preset {base.preset}, {base.dataset} {tuple(dataset.input_shape)} ({dataset.source}), model {base.model}, "
                 f"{base.clients_per_round} clients/round x {base.samples_per_client} samples, B={base.batch_size}, E={base.local_epochs}, "
                 f"augmentation {dataset.augmentation}; median over {args.rounds - 2} rounds")
    lines.append(f"device {record['device']} ({record['name']}), torch {record['torch']}, CUDA {record['cuda']}"
                 + (f", {record['threads']} CPU threads" if "threads" in record else "")
                 + f"; load average before the run {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    lines.append(f"correctness: max |client_update - bare loop| after one client = {check_same_work(base, shards[0], model_kwargs, augment, device):.3g}")
    medians: dict[str, float] = {}
    minima: dict[str, float] = {}  # less sensitive than medians to other processes on a shared machine
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in ALGORITHMS:
            config = base.replace(algorithm=algorithm)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with UtilisationSampler(device) as sampler:
                rounds, last, window = timed_rounds(config, Path(tmp) / algorithm, device)
            peak = f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if device.type == "cuda" else ""
            ours = statistics.median(rounds)
            bare_times = bare_rounds(config, shards, build_model(config.model, seed=0, **model_kwargs).to(device), augment, device)
            bare = statistics.median(bare_times)
            medians[algorithm], minima[algorithm] = ours, min(rounds)
            eval_s = max(last - ours, 0.0)
            hours, full_rounds, evaluations = full_run(config, ours, eval_s)
            lines.append(f"{algorithm:8s} round {ours * 1e3:8.1f} ms  ({1 / ours:6.2f} rounds/s)  bare loop {bare * 1e3:8.1f} ms  "
                         f"overhead ratio {ours / bare:5.3f} (goal <= 1.10); fastest round {min(rounds) * 1e3:.1f} ms, "
                         f"bare {min(bare_times) * 1e3:.1f} ms")
            lines.append(f"{'':8s} evaluation + checkpoint {eval_s:.2f} s; full {base.preset} run ({full_rounds} rounds, "
                         f"{evaluations} evaluations) ~ {hours:.1f} h"
                         + (f"; GPU utilisation {sampler.mean_between(*window)}; {peak}" if device.type == "cuda" else ""))
    lines.append(f"FedSAM/FedAvg per-round time ratio  {medians['fedsam'] / medians['fedavg']:.3f} (floor ~2, goal <= 2.1); "
                 f"of the fastest rounds {minima['fedsam'] / minima['fedavg']:.3f}")
    lines.append(f"FedASAM/FedAvg per-round time ratio {medians['fedasam'] / medians['fedavg']:.3f}; "
                 f"of the fastest rounds {minima['fedasam'] / minima['fedavg']:.3f}")
    lines.append(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
