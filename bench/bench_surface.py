"""Benchmark: cost of one loss-surface grid point against the fastest plain evaluation pass, and against the peers' way.

Runs, in one process, on the paper's CNN (Hsu et al. / FedSAM LeNet-like, 1x28x28 input) and real
Fashion-MNIST (a fixed seeded subset of the training split):

1. the floor: the fastest plain ``model(x)`` pass over the same samples, over batch sizes;
2. our ``compute_surface`` per grid point, for both evaluation methods (``loop``, ``vmap``), several
   batch sizes and points per pass; the ratio to the floor (goal <= 1.1);
3. a full ``steps x steps`` grid with our best setting against the peers' way (Li et al.'s
   ``plot_surface.py`` / loss-landscapes): for every grid point ``load_state_dict`` into the model,
   then iterate a ``DataLoader`` over a Dataset whose ``__getitem__`` converts and normalises each
   uint8 sample on every access (torchvision-style); the speed ratio and the largest difference
   between the two surfaces are printed side by side.

Timings are best-of-``--repeats`` wall-clock seconds; the machine is shared, so ratios matter more
than absolute times. No GPU here: the GPU speed-up of several points per pass is not measured.

    .venv/bin/python bench/bench_surface.py --samples 1000 --steps 21
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedtrain.data import ImageDataset, evaluation_tensors, load_dataset, subset_indices
from fedtrain.models import build_model
from landscape.surface.directions import random_directions
from landscape.surface.grid import compute_surface, symmetric_coordinates


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


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def plain_pass(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            model(x[start : start + batch_size])


def peers_surface(model: nn.Module, directions, coordinates, loader: DataLoader) -> np.ndarray:
    """Li et al.'s loop: load each point's weights into the model, then a full DataLoader pass."""
    losses = np.zeros((len(coordinates[0]), len(coordinates[1])))
    criterion = nn.CrossEntropyLoss(reduction="sum")
    for i, a in enumerate(coordinates[0]):
        for j, b in enumerate(coordinates[1]):
            model.load_state_dict(directions.point((a, b)))
            total, count = 0.0, 0
            with torch.no_grad():
                for inputs, targets in loader:
                    total += criterion(model(inputs), targets).item()
                    count += len(targets)
            losses[i, j] = total / count
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="training samples evaluated per grid point")
    parser.add_argument("--steps", type=int, default=21, help="grid points per axis for the comparison with the peers")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for the per-point timings")
    parser.add_argument("--peer-batch-size", type=int, default=128, help="DataLoader batch size of the peers' way (Li et al.'s default)")
    args = parser.parse_args()

    torch.manual_seed(0)
    dataset = load_dataset("fashion-mnist")
    x, y = evaluation_tensors(dataset, "train", args.samples, seed=0)
    model = build_model("cnn", input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=0).eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    directions = random_directions(params, seed=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CNN with {sum(p.numel() for p in params.values())} "
          f"parameters; {args.samples} Fashion-MNIST training samples; untrained weights (timing does not depend on them)")

    print("\n1) floor: plain model(x) pass over the samples")
    floors = {bs: best_time(lambda bs=bs: plain_pass(model, x, bs), args.repeats) for bs in (16, 32, 64, 128, 256, 512, 1024)}
    for bs, seconds in floors.items():
        print(f"   batch {bs:5d}: {seconds:.3f} s")
    floor_bs = min(floors, key=floors.get)
    floor = floors[floor_bs]
    print(f"   floor = {floor:.3f} s (batch {floor_bs})")

    print("\n2) compute_surface per grid point / floor pass, timed alternately (best of each; a 2x2 grid per timing)")
    grid = [symmetric_coordinates(1.0, 2)] * 2
    settings = [("loop", bs, ppp) for bs in (64, 256, 1024) for ppp in (1, 4)] + [("vmap", 256, 4)]
    results = {}
    for method, bs, ppp in settings:
        ours_times, floor_times = [], []
        for _ in range(args.repeats):
            floor_times.append(best_time(lambda: plain_pass(model, x, floor_bs), 1))
            run = lambda: compute_surface(model, directions, grid, {"train": (x, y)}, batch_size=bs, points_per_pass=ppp, method=method)  # noqa: E731
            ours_times.append(best_time(run, 1) / 4)
        results[(method, bs, ppp)] = min(ours_times) / min(floor_times)
        print(f"   {method:4s} batch {bs:5d} points/pass {ppp}: {min(ours_times):.3f} s/point, floor {min(floor_times):.3f} s "
              f"-> {results[(method, bs, ppp)]:.2f} x floor")
    best = min(results, key=results.get)
    print(f"   best: method={best[0]} batch={best[1]} points_per_pass={best[2]}: {results[best]:.2f} x floor (goal <= 1.1)")

    steps = args.steps
    print(f"\n3) {steps}x{steps} grid: ours ({best[0]}, batch {best[1]}, {best[2]} points/pass) vs the peers' way "
          f"(load_state_dict + DataLoader batch {args.peer_batch_size} with per-sample normalisation)")
    coordinates = [symmetric_coordinates(1.0, steps)] * 2
    start = time.perf_counter()
    ours = compute_surface(model, directions, coordinates, {"train": (x, y)}, batch_size=best[1], points_per_pass=best[2], method=best[0])
    ours_seconds = time.perf_counter() - start
    loader = DataLoader(PerSampleNormalizingDataset(dataset, subset_indices(len(dataset.train_labels), args.samples, 0)),
                        batch_size=args.peer_batch_size, shuffle=False, num_workers=0)
    start = time.perf_counter()
    peers = peers_surface(build_model("cnn", input_shape=dataset.input_shape, num_classes=10).eval(), directions, coordinates, loader)
    peers_seconds = time.perf_counter() - start
    difference = np.abs(ours.value("train", "loss") - peers).max()
    print(f"   ours: {ours_seconds:.1f} s ({ours_seconds / steps**2:.3f} s/point); peers' way: {peers_seconds:.1f} s "
          f"({peers_seconds / steps**2:.3f} s/point); speed-up {peers_seconds / ours_seconds:.2f}x")
    print(f"   max |loss(ours) - loss(peers)| over the grid: {difference:.2e} (float32 forward, different batch sizes)")


if __name__ == "__main__":
    main()
