"""Benchmark: cost of one loss-surface grid point on a device, against a plain forward pass and against the peers' loop.

Runs, in one process, on the paper's CNN (LeNet-like: 1x28x28 Fashion-MNIST, or 3x32x32 CIFAR-10) and a
fixed seeded subset of the training split, all on ``--device``:

1. the floor: one plain ``model(x)`` pass over the samples (data already on the device), at the best
   of several batch sizes;
2. ours: ``compute_surface`` per grid point, for both evaluation methods (``loop``, ``vmap``), today's
   CPU defaults, a few batch sizes and points per pass, and (on a GPU) the choice
   :func:`landscape.surface.passes.plan_passes` makes from free memory for the paper's 41 x 41 grid;
   the ratio to the floor (GPU goal: <= 0.5 x the floor per point, by evaluating several points per pass);
3. the peers' way (Li et al.'s ``plot_surface.py`` with ``--cuda``, loss-landscapes): for every grid
   point ``load_state_dict`` into the model, then iterate a ``DataLoader`` over a Dataset whose
   ``__getitem__`` converts and normalises each uint8 sample on every access (torchvision-style),
   each batch moved to the device, the loss read back per batch; timed on a few points of the same
   grid. The speed-up of our best setting (goal >= 5x) and the largest loss difference between the
   two at those points (the correctness column) are printed side by side.

Timings are best-of-``--repeats`` wall-clock seconds with the device synchronised, ours alternating
with the floor (and with the peers) so that load drift on a shared machine hits both sides of a ratio;
on a GPU both sides run in full float32 (TF32 off, as surfaces are computed). On a shared CPU the
ratios matter more than absolute times.

    python bench/cifar_shaped.py --out runs/cifar-shaped
    python bench/bench_surface.py --device cuda --dataset cifar10 --data-dir runs/cifar-shaped --samples 10000 \\
        --out bench/results/surface-gpu.txt
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedtrain.data import ImageDataset, evaluation_tensors, load_dataset, subset_indices
from fedtrain.device import device_record, ieee_float32, resolve_device, synchronize
from fedtrain.models import build_model
from landscape.surface.directions import Directions, random_directions
from landscape.surface.grid import compute_surface, symmetric_coordinates
from landscape.surface.passes import plan_passes

PAPER_STEPS = 41  # the paper's surfaces: 41 x 41 points


class PerSampleNormalizingDataset(Dataset):
    """torchvision-style: converts one uint8 image to a normalised float tensor on every access."""

    def __init__(self, dataset: ImageDataset, indices: torch.Tensor) -> None:
        self.images, self.labels = dataset.train_images[indices], dataset.train_labels[indices]
        self.mean = torch.tensor(dataset.mean).view(-1, 1, 1)
        self.std = torch.tensor(dataset.std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index].to(torch.float32) / 255.0
        return (image - self.mean) / self.std, self.labels[index]


class Report:
    """Prints each line at once (long runs show progress) and keeps them for ``--out``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)


def best_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall-clock seconds of ``repeats`` calls, the device synchronised before and after each."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def plain_pass(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    with torch.no_grad(), ieee_float32(x.device):
        for start in range(0, x.shape[0], batch_size):
            model(x[start : start + batch_size])


def grid_for(points: int) -> list[np.ndarray]:
    """A k x k grid of at least ``points`` points over [-1, 1]^2."""
    side = max(2, math.ceil(math.sqrt(points)))
    return [symmetric_coordinates(1.0, side)] * 2


def peers_losses(model: nn.Module, directions: Directions, points: list[tuple[float, float]], loader: DataLoader,
                 device: torch.device) -> list[float]:
    """Li et al.'s loop: load each point's weights into the model, then a full DataLoader pass moving each batch."""
    criterion = nn.CrossEntropyLoss()
    losses = []
    with ieee_float32(device):
        for a, b in points:
            model.load_state_dict(directions.point((a, b)))
            total, count = 0.0, 0
            with torch.no_grad():
                for inputs, targets in loader:
                    inputs, targets = inputs.to(device), targets.to(device)
                    total += criterion(model(inputs), targets).item() * len(targets)
                    count += len(targets)
            losses.append(total / count)
    return losses


def candidates(device: torch.device, floor_batch: int, planned: dict[str, tuple[int, int, str]]) -> list[tuple[str, int, int, str]]:
    """(method, batch size, points per pass, label) to time: defaults, the floor's batch size, and the memory plan.

    One point per pass is timed with ``loop`` only: ``vmap`` of one point is the same call.
    """
    rows = [("loop", 64, 8, "CPU defaults"), ("vmap", 64, 8, "CPU defaults")]
    rows += [("loop", floor_batch, 1, "floor's batch"), ("loop", floor_batch, 8, "floor's batch"), ("vmap", floor_batch, 8, "floor's batch")]
    rows += [(method, batch, ppp, label) for method, (batch, ppp, label) in planned.items()]
    unique: dict[tuple[str, int, int], str] = {}
    for method, batch, ppp, label in rows:
        unique.setdefault((method, batch, ppp), label)
    return [(m, b, p, label) for (m, b, p), label in unique.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--dataset", choices=("fashion-mnist", "cifar10"), default="fashion-mnist")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder of the dataset (CIFAR: bench/cifar_shaped.py's --out)")
    parser.add_argument("--samples", type=int, default=1000, help="training samples evaluated per grid point (paper: 10,000)")
    parser.add_argument("--points", type=int, default=16, help="grid points timed per setting of ours (at least 2 chunks of the largest)")
    parser.add_argument("--peer-points", type=int, default=4, help="grid points timed for the peers' loop")
    parser.add_argument("--repeats", type=int, default=2, help="best-of repeats of every timing (the first warms up)")
    parser.add_argument("--peer-batch-size", type=int, default=128, help="DataLoader batch size of the peers' way (Li et al.'s default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice; 1 is steadier on a shared machine)")
    parser.add_argument("--out", type=Path, default=None, help="also write the output (command first) to this file")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    say = Report()
    say("# " + " ".join(["python", *map(shlex.quote, sys.argv)]))

    device = resolve_device(args.device)
    torch.manual_seed(0)
    dataset = load_dataset(args.dataset, args.data_dir)
    x, y = evaluation_tensors(dataset, "train", args.samples, seed=0)
    x, y = x.to(device), y.to(device)
    cpu_model = build_model("cnn", input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=0).eval()
    model = build_model("cnn", input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=0).to(device).eval()
    directions = random_directions({n: p.detach() for n, p in cpu_model.named_parameters()}, seed=0)
    record = device_record(device)
    say(f"device {record['device']} ({record['name']}), torch {record['torch']}, CUDA {record['cuda']}, "
        f"{torch.get_num_threads()} CPU threads; paper CNN with {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{len(y):,} {args.dataset} training samples {tuple(x.shape[1:])}; untrained weights (timing does not depend on them); "
        f"load average {os.getloadavg()[0]:.1f} at the start")

    say("\n1) floor: one plain model(x) pass over the samples, data on the device")
    plain_pass(model, x, 256)  # warm-up (allocator, cuDNN heuristics, thread pools)
    sizes = sorted({b for b in (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, len(y)) if b <= len(y)})
    floors = {}
    for batch in sizes:
        floors[batch] = best_time(lambda b=batch: plain_pass(model, x, b), args.repeats, device)
        say(f"   batch {batch:6d}: {floors[batch]:.4f} s")
    floor_batch = min(floors, key=floors.get)
    floor = floors[floor_batch]
    say(f"   floor = {floor:.4f} s per pass (batch {floor_batch})")

    planned = {}
    if device.type == "cuda":  # what plot-surface picks on this GPU for the paper's 41 x 41 grid (the same for both methods)
        resident = x.numel() * x.element_size() + 4 * sum(p.numel() * p.element_size() for p in model.parameters())
        plan = plan_passes(cpu_model, x[0], device, num_examples=len(y), num_points=PAPER_STEPS**2, resident_bytes=resident)
        label = f"memory plan, {plan.memory['free_bytes'] / 2**30:.0f} GiB free"
        planned = {method: (plan.batch_size, plan.points_per_pass, label) for method in ("loop", "vmap")}

    say(f"\n2) ours: compute_surface per grid point ({args.points}+ points a setting), timed alternately with the floor pass "
        "(best of each; the ratio of the two, so that a shared machine's load drift hits both)")
    results, ratios = {}, {}
    for method, batch, ppp, label in candidates(device, floor_batch, planned):
        grid = grid_for(max(args.points, 2 * ppp))
        count = grid[0].size * grid[1].size
        data = {"train": (x, y)}
        run = lambda g=grid, m=method, b=batch, p=ppp: compute_surface(cpu_model, directions, g, data, batch_size=b,  # noqa: E731
                                                                       points_per_pass=p, method=m, device=device)
        run()  # warm-up (vmap, cuDNN heuristics for new shapes)
        ours_times, floor_times = [], []
        for _ in range(args.repeats):
            floor_times.append(best_time(lambda: plain_pass(model, x, floor_batch), 1, device))
            ours_times.append(best_time(run, 1, device) / count)
        key = (method, batch, ppp)
        results[key], ratios[key] = min(ours_times), min(ours_times) / min(floor_times)
        say(f"   {method:4s} batch {batch:6d} points/pass {ppp:3d} ({label}): {results[key]:.4f} s/point, floor alongside "
            f"{min(floor_times):.4f} s -> {ratios[key]:.2f} x floor")
    best = min(ratios, key=ratios.get)
    say(f"   best: method={best[0]} batch={best[1]} points_per_pass={best[2]}: {ratios[best]:.2f} x floor (GPU goal <= 0.5)")

    peer_points = [tuple(map(float, p)) for p in np.stack(np.meshgrid(*grid_for(args.peer_points), indexing="ij"), -1).reshape(-1, 2)]
    peer_points = peer_points[: args.peer_points]
    xs, ys = np.array(sorted({a for a, _ in peer_points})), np.array(sorted({b for _, b in peer_points}))
    say(f"\n3) the peers' way on {len(peer_points)} points: load_state_dict + DataLoader (batch {args.peer_batch_size}, "
        "per-sample normalisation, each batch moved to the device), timed alternately with ours (best setting) on the "
        f"{xs.size} x {ys.size} grid holding them")
    loader = DataLoader(PerSampleNormalizingDataset(dataset, subset_indices(len(dataset.train_labels), args.samples, 0)),
                        batch_size=args.peer_batch_size, shuffle=False, num_workers=0)
    peers_model = build_model("cnn", input_shape=dataset.input_shape, num_classes=dataset.num_classes).to(device).eval()
    on_device = directions.to(device)
    peers: list[float] = []
    surfaces = []
    peers_times, ours_times = [], []
    for _ in range(args.repeats):
        peers_times.append(best_time(lambda: peers.__setitem__(slice(None), peers_losses(peers_model, on_device, peer_points, loader, device)),
                                     1, device) / len(peer_points))
        ours_times.append(best_time(lambda: surfaces.append(compute_surface(
            cpu_model, directions, [xs, ys], {"train": (x, y)}, batch_size=best[1], points_per_pass=best[2], method=best[0],
            device=device)), 1, device) / (xs.size * ys.size))
    ours_grid = surfaces[-1].value("train", "loss")
    ours_losses = [ours_grid[int(np.flatnonzero(xs == a)[0]), int(np.flatnonzero(ys == b)[0])] for a, b in peer_points]
    difference = max(abs(o - p) for o, p in zip(ours_losses, peers))
    peers_seconds, ours_seconds = min(peers_times), min(ours_times)
    speed_up = peers_seconds / ours_seconds
    say(f"   peers' way: {peers_seconds:.4f} s/point; ours: {ours_seconds:.4f} s/point; speed-up {speed_up:.1f}x (goal >= 5)")
    say(f"   correctness: max |loss(ours) - loss(peers)| = {difference:.2e} (float32 forward, different batch sizes)")

    steps = PAPER_STEPS
    say(f"\nsummary ({args.dataset}, {len(y):,} samples, {record['device']}): ours {ratios[best]:.2f} x floor (goal <= 0.5 on GPU), "
        f"{speed_up:.1f}x the peers' loop (goal >= 5), max |dloss| {difference:.1e}; a {steps} x {steps} surface on one "
        f"split: {results[best] * steps**2 / 60:.1f} min (peers' way {peers_seconds * steps**2 / 60:.1f} min); load average "
        f"{os.getloadavg()[0]:.1f} at the end")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as handle:
            handle.write("\n".join(say.lines) + "\n\n")


if __name__ == "__main__":
    main()
