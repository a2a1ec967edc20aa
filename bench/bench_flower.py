"""Benchmark of the Flower engine: round time of a Flower simulation (Ray) vs the native engine on the quick preset's shape, one machine.

Both engines run the same rounds from the same initial model on real Fashion-MNIST with the quick preset
(100 clients, K=10 sampled per round, 3 local steps of 32, the paper's CNN): the native engine with
:func:`fedtrain.round.federated_round` in this process; Flower with :func:`fedtrain.flower.flower_round_fn`
inside a ServerApp of :func:`flwr.simulation.run_simulation` (Ray backend, 100 virtual SuperNodes, one
one-CPU ClientApp at a time, so both do the same arithmetic sequentially on one thread). Round 0 of each is
a warm-up, printed apart: for Flower it includes Ray's start-up (the ServerApp starts before Ray is up), the
query of the nodes' clients and each node's first dataset load; Flower's shut-down is printed too. It prints the median and
fastest round of each, the overhead Flower/native, and as the correctness column the largest |difference|
between the two engines' global weights after the last round (0: bit-identical). The first output line is
the command that produced it.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_flower.py --rounds 6 --out bench/results/flower-cpu.txt
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
from fedtrain.config import preset_config
from fedtrain.data import load_dataset
from fedtrain.io import atomic_write_text
from fedtrain.models import build_model
from fedtrain.round import federated_round
from fedtrain.run import round_data, run_inputs
from fedtrain.server import ServerState


def emit(lines: list[str], text: str) -> None:
    """Append a line to the output and show it at once."""
    lines.append(text)
    print(text, flush=True)


def timed_rounds(step, state: ServerState, rounds: int) -> tuple[ServerState, list[float]]:
    """``rounds`` rounds of ``step`` from ``state``: the final state and each round's seconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        state, _ = step(state)
        times.append(time.perf_counter() - start)
    return state, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per engine, the first a warm-up")
    parser.add_argument("--algorithm", default="fedavg", choices=("fedavg", "fedsam", "fedasam"))
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: /usr/share/datasets)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (the ClientApps get one CPU each)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from fedtrain.flower import flower_round_fn, make_client_app, simulation_backend

    lines: list[str] = []
    emit(lines, "$ OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset") + " " + shlex.join([sys.executable, *sys.argv]))
    emit(lines, f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared 2-core machine: other jobs run too)")
    config = preset_config("quick", algorithm=args.algorithm, device="cpu", rounds=args.rounds, data_dir=args.data_dir)
    dataset = load_dataset(config.dataset, config.data_dir)
    partition, model_kwargs = run_inputs(config, dataset)
    data = round_data(config, dataset, partition, model_kwargs)
    initial = build_model(config.model, seed=derive_seed(config.seed, "model-init"), **model_kwargs).state_dict()
    start_state = ServerState(round=0, params={k: v.clone() for k, v in initial.items()})
    emit(lines, f"shape: quick preset, {config.dataset}, {config.model}, {config.num_clients} clients x {config.samples_per_client} samples, "
                f"K={config.clients_per_round}, B={config.batch_size}, E={config.local_epochs}, {args.algorithm}, {args.rounds} rounds "
                f"(round 0 warm-up), torch threads {torch.get_num_threads()}")

    native, native_times = timed_rounds(lambda s: federated_round(s, config, data, s.round), start_state, args.rounds)

    flower: dict = {}
    app = ServerApp()

    @app.main()
    def server(grid: Grid, context: Context) -> None:
        flower["entered"] = time.perf_counter()
        step = flower_round_fn(grid)
        flower["state"], flower["times"] = timed_rounds(lambda s: step(s, config, data, s.round), start_state, args.rounds)
        flower["left"] = time.perf_counter()

    began = time.perf_counter()
    run_simulation(server_app=app, client_app=make_client_app(), num_supernodes=config.num_clients,
                   backend_config=simulation_backend(total_cpus=1))
    ended = time.perf_counter()
    flower_times = flower["times"]

    diff = max(float((native.params[k].double() - flower["state"].params[k].double()).abs().max()) for k in native.params)
    rows = [("native", native_times), ("flower", flower_times)]
    emit(lines, f"{'engine':8s} {'warm-up s':>10s} {'median s':>9s} {'fastest s':>10s}")
    for name, times in rows:
        emit(lines, f"{name:8s} {times[0]:10.3f} {statistics.median(times[1:]):9.3f} {min(times[1:]):10.3f}")
    emit(lines, f"flower/native round time: median {statistics.median(flower_times[1:]) / statistics.median(native_times[1:]):.2f}x, "
                f"fastest {min(flower_times[1:]) / min(native_times[1:]):.2f}x")
    emit(lines, f"flower: run_simulation wall {ended - began:.1f} s in all; the ServerApp starts {flower['entered'] - began:.1f} s "
                "after the call, before Ray is up, so Ray's start-up, the query of the nodes' clients and each node's first "
                f"dataset load fall in its warm-up round; shut-down after the last round {ended - flower['left']:.1f} s")
    emit(lines, f"max |w_native - w_flower| after {args.rounds} rounds: {diff:.3g}")
    emit(lines, f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.out is not None:
        atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
