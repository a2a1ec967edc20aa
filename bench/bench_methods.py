"""Benchmark of the federated methods: the time of one round of each, as a ratio to FedAvg's, and the passes a local step makes.

Runs, in one process, on one device and on the same inputs (a preset's clients/rounds shape on its dataset),
``fedtrain.run.train`` of every method for ``--rounds`` rounds (evaluation and checkpoint pushed to the last
round, which is not timed; the first round is warm-up), ``--repeats`` times in turn (method 1, 2, ..., then
again), so that load from other processes falls on all of them alike. On a CPU a round is timed by this
process's CPU time (``time.process_time``; with ``--threads 1`` it does not count the time other jobs hold the
cores, which wall time on a shared machine does), on a GPU by wall time. Per method it prints the median round
time over all timed rounds, its ratio to FedAvg's, and, as the check that explains the ratio, the forward
passes one local step of one client makes (counted with a forward hook on the client's model, from the state
the timed run ended with: FedAvg and FedLESAM 1, the SAM family 2). The first output line is the command.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_methods.py --threads 1 --rounds 12 --repeats 2 \\
        --out bench/results/methods-cpu.txt
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_train import bench_config, timed_rounds
from fedtrain.checkpoint import load_checkpoint
from fedtrain.config import ALGORITHMS
from fedtrain.data import load_dataset
from fedtrain.device import device_record, resolve_device
from fedtrain.io import atomic_write_text
from fedtrain.methods import ClientContext, load_method
from fedtrain.round import client_generator, plan_round
from fedtrain.run import round_data, run_inputs


def passes_per_step(config, out: Path, device: torch.device) -> float:
    """Forward passes per local step of client 0 in the round after the run ``out`` ended, from its saved state."""
    dataset = load_dataset(config.dataset, config.data_dir).to(device)
    partition, model_kwargs = run_inputs(config, dataset)
    data = round_data(config, dataset, partition, model_kwargs)
    saved = load_checkpoint(out / "checkpoints" / "final.pt", map_location=device)
    plan = plan_round(config, saved.round, augment=data.augment)
    forwards: list[int] = []
    hook = data.worker.register_forward_hook(lambda *_: forwards.append(1))
    ctx = ClientContext(round=saved.round, client=0, config=plan.client_config, generator=client_generator(config.seed, saved.round, 0),
                        worker=data.worker, server_state=saved.state.get("method_state", {}))
    update, _ = load_method(config).client_update(saved.weights, data.shards[0], saved.state.get("client_states", {}).get("0", {}), ctx)
    hook.remove()
    return len(forwards) / update.metrics["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--preset", default="quick", help="the clients/rounds shape (default quick)")
    parser.add_argument("--dataset", default=None, help="default: the preset's")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder of the dataset")
    parser.add_argument("--methods", default=",".join(ALGORITHMS), help="comma-separated, FedAvg first (default: all built-ins)")
    parser.add_argument("--rounds", type=int, default=12, help="rounds per method and repeat; the first is warm-up, the last evaluates (>= 4)")
    parser.add_argument("--repeats", type=int, default=2, help="times every method is run, in turn (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if args.rounds < 4 or methods[0] != "fedavg":
        parser.error("--rounds must be >= 4 and --methods must start with fedavg (the ratios' denominator)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    base = bench_config(args)
    record = device_record(device)
    clock, clock_name = (time.process_time, "CPU time of this process") if device.type == "cpu" else (time.perf_counter, "wall time")
    lines = ["$ " + shlex.join([Path(sys.executable).name, *sys.argv])]
    lines.append(f"bench_methods: preset {base.preset}, {base.dataset}, model {base.model}, {base.clients_per_round} clients/round x "
                 f"{base.samples_per_client} samples, B={base.batch_size}, E={base.local_epochs}; median over "
                 f"{args.repeats} x {args.rounds - 2} rounds per method, methods run in turn; a round's time is the {clock_name}")
    lines.append(f"device {record['device']} ({record['name']}), torch {record['torch']}"
                 + (f", {record['threads']} CPU threads" if "threads" in record else "")
                 + f"; load average before the run {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores): "
                 + ("a machine shared with other jobs, so absolute times are inflated; the ratios are what to read"
                    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1) else "an idle machine"))
    times: dict[str, list[float]] = {m: [] for m in methods}
    passes: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for method in methods:
                config = base.replace(algorithm=method)
                out = Path(tmp) / f"{method}-{repeat}"
                rounds, _, _ = timed_rounds(config, out, device, clock=clock)
                times[method] += rounds
                if method not in passes:
                    passes[method] = passes_per_step(config, out, device)
    lines.append(f"load average after the run {os.getloadavg()[0]:.2f}")
    fedavg = statistics.median(times["fedavg"])
    lines.append(f"{'method':9s} {'round (ms)':>11s} {'/ FedAvg':>9s} {'fastest (ms)':>13s} {'/ FedAvg':>9s}  forward passes a local step")
    for method in methods:
        median, fastest = statistics.median(times[method]), min(times[method])
        lines.append(f"{method:9s} {median * 1e3:11.1f} {median / fedavg:9.2f} {fastest * 1e3:13.1f} "
                     f"{fastest / min(times['fedavg']):9.2f}  {passes[method]:.0f}")
    if "fedsam" in methods and "fedlesam" in methods:
        lines.append(f"FedLESAM's round takes {statistics.median(times['fedlesam']) / statistics.median(times['fedsam']):.2f}x "
                     f"FedSAM's (speed-up {statistics.median(times['fedsam']) / statistics.median(times['fedlesam']):.2f}x)")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
