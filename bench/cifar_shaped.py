"""CIFAR-10-shaped data for benchmarks where CIFAR-10 cannot be fetched: same format, shapes and sizes, seeded.

Writes ``OUT/cifar-10-batches-py/`` with ``data_batch_1..5`` (10,000 images each) and ``test_batch``
(10,000) in the canonical "python version" pickle layout that ``fedtrain.data`` reads, so
``--dataset cifar10 --data-dir OUT`` runs the paper's shapes (3 x 32 x 32, 10 classes, 50,000 + 10,000).
Pixels are seeded uniform noise plus a class-dependent mean colour, so a model can learn something and
timings see realistic, non-degenerate activations. The data are for measuring cost only: never a result.

    python bench/cifar_shaped.py --out runs/cifar-shaped [--per-batch 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]


def write_cifar_shaped(out: Path, *, per_batch: int = 10_000, seed: int = 0) -> Path:
    """Write the six batches under ``out/cifar-10-batches-py`` (skipped when already complete); returns that folder."""
    folder = out / "cifar-10-batches-py"
    if all((folder / name).is_file() for name in TRAIN_FILES + TEST_FILES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    class_colour = rng.integers(40, 216, size=(10, 3))
    for name in TRAIN_FILES + TEST_FILES:
        labels = rng.permutation(np.arange(per_batch) % 10)  # balanced like CIFAR-10 (5,000 a class): alpha=0 needs it
        noise = rng.integers(-40, 41, size=(per_batch, 3, 1024))
        pixels = np.clip(class_colour[labels][:, :, None] + noise, 0, 255).astype(np.uint8).reshape(per_batch, 3072)
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": pixels,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        tmp = folder / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            pickle.dump(batch, handle, protocol=4)
        tmp.replace(folder / name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/cifar-shaped"))
    parser.add_argument("--per-batch", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_cifar_shaped(args.out, per_batch=args.per_batch, seed=args.seed))


if __name__ == "__main__":
    main()
