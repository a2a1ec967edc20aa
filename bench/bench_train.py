"""Benchmark of federated training rounds: rounds/s per algorithm, overhead over a bare loop, FedSAM/FedAvg cost.

Runs, in one process and on the same inputs (real Fashion-MNIST, the paper's CNN, the ``quick`` preset's
clients/rounds shape):

* ``fedtrain.run.train`` for FedAvg, FedSAM and FedASAM, timing every round through the progress callback
  (evaluation and checkpoints are pushed to the last round, which is not timed);
* a bare loop doing the same local steps (same clients, same batches, same optimiser step, SAM's two passes)
  with nothing around it: no state-dict loading, no deltas, no aggregation, no hooks.

It prints the median round time of each, the overhead ratio (goal <= 1.10), the FedSAM/FedAvg and
FedASAM/FedAvg per-round ratios (floor about 2: two passes per step; goal <= 2.1), and, as a correctness
check next to the timings, the largest difference between one client's weights after our client update
and after the bare loop (0 means the bare loop does exactly the same work).

Usage: ``.venv/bin/python bench/bench_train.py [--rounds 8] [--threads N]``; also written to bench/results/train.txt.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from fedtrain._seeds import derive_seed, derived_generator
from fedtrain.client import ClientConfig, ClientShard, _batches, client_update
from fedtrain.config import preset_config
from fedtrain.data import load_dataset
from fedtrain.models import build_model
from fedtrain.partition import make_partition
from fedtrain.round import client_generator
from fedtrain.run import train
from fedtrain.sam import asam_epsilon, sam_epsilon, weight_mask
from fedtrain.server import select_clients


def timed_rounds(config, out: Path) -> list[float]:
    """Wall time of each round of ``train`` except the first (warm-up) and the last (evaluation + checkpoint)."""
    stamps: list[float] = []
    train(config, out, overwrite=True, progress=lambda event: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps[:-2], stamps[1:-1])]


def bare_rounds(config, dataset, shards, model) -> list[float]:
    """The same local steps as ``train`` with nothing else: per-round wall times (rounds 1..R-2, as timed_rounds)."""
    params = [p for p in model.parameters()]
    mask = weight_mask([n for n, _ in model.named_parameters()])
    times = []
    for t in range(1, config.rounds - 1):
        start = time.perf_counter()
        for k in select_clients(config.seed, t, config.num_clients, config.clients_per_round):
            opt = torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum)
            cfg = ClientConfig(lr=config.lr, batch_size=config.batch_size, local_epochs=config.local_epochs)
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
        times.append(time.perf_counter() - start)
    return times


def check_same_work(config, shards, model_kwargs) -> float:
    """Max |difference| between our client_update and the bare SGD loop for one client (should be ~0)."""
    init = build_model(config.model, seed=derive_seed(config.seed, "model-init"), **model_kwargs)
    state = {k: v.clone() for k, v in init.state_dict().items()}
    cfg = ClientConfig(lr=config.lr, batch_size=config.batch_size, weight_decay=config.weight_decay)
    ours = client_update(build_model(config.model, seed=0, **model_kwargs), state, shards[0], cfg, derived_generator(0, "check"))
    opt = torch.optim.SGD(init.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for x, y in _batches(shards[0], cfg, derived_generator(0, "check")):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(init(x), y).backward()
        opt.step()
    return max(float((state[k] + ours.delta[k] - v).abs().max()) for k, v in init.state_dict().items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds per algorithm (first and last are not timed)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = preset_config("quick", rounds=args.rounds, eval_every=10_000, eval_last=0, checkpoint_every=0, eval_examples=1000)
    dataset = load_dataset(base.dataset)
    partition = make_partition(dataset.train_labels, scheme=base.partition, num_clients=base.num_clients, alpha=base.alpha,
                               seed=base.seed, samples_per_client=base.samples_per_client, dataset=base.dataset)
    shards = [ClientShard(dataset.train_images[i], dataset.train_labels[i], dataset.normalize) for i in partition.client_indices]
    model_kwargs = {"input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes}
    lines = [f"bench_train: {base.dataset}, model {base.model}, {base.clients_per_round} clients/round x "
             f"{base.samples_per_client} samples, B={base.batch_size}, E={base.local_epochs}; torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; median over {args.rounds - 2} rounds"]
    lines.append(f"correctness: max |client_update - bare loop| after one client = {check_same_work(base, shards, model_kwargs):.3g}")
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in ("fedavg", "fedsam", "fedasam"):
            config = base.replace(algorithm=algorithm)
            ours = statistics.median(timed_rounds(config, Path(tmp) / algorithm))
            bare = statistics.median(bare_rounds(config, dataset, shards, build_model(config.model, seed=0, **model_kwargs)))
            medians[algorithm] = ours
            lines.append(f"{algorithm:8s} round {ours * 1e3:8.1f} ms  ({1 / ours:6.2f} rounds/s)  bare loop {bare * 1e3:8.1f} ms  "
                         f"overhead ratio {ours / bare:5.3f} (goal <= 1.10)")
    lines.append(f"FedSAM/FedAvg per-round time ratio  {medians['fedsam'] / medians['fedavg']:.3f} (floor ~2, goal <= 2.1)")
    lines.append(f"FedASAM/FedAvg per-round time ratio {medians['fedasam'] / medians['fedavg']:.3f}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    results = Path(__file__).resolve().parent / "results" / "train.txt"
    results.parent.mkdir(parents=True, exist_ok=True)
    from fedtrain.io import atomic_write_text

    atomic_write_text(results, text)


if __name__ == "__main__":
    main()
