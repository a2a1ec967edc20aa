"""Shared fixtures: the real Fashion-MNIST (installed by the set-up) and tiny IDX/CIFAR fixture writers."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real Fashion-MNIST. The set-up (`make test`) installs it; its absence is a failure, not a skip."""
    from fedtrain.data import load_dataset

    return load_dataset("fashion-mnist")


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """Write an unsigned-byte IDX file (the MNIST format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def write_mnist_like(folder: Path, num_train: int = 50, num_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    """A tiny MNIST-format dataset; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (num_train, 28, 28)),
        "train_labels": np.arange(num_train) % 10,
        "test_images": rng.integers(0, 256, (num_test, 28, 28)),
        "test_labels": np.arange(num_test) % 10,
    }
    names = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    for key, name in names.items():
        write_idx(folder / name, arrays[key], gz=gz)
    return arrays


def write_cifar(root: Path, num_classes: int = 10, per_batch: int = 12, seed: int = 0) -> dict:
    """Tiny CIFAR-10/100 "python version" batches in the canonical pickle layout; returns the arrays."""
    rng = np.random.default_rng(seed)
    if num_classes == 10:
        folder, train_files, test_files, key = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"
    else:
        folder, train_files, test_files, key = root / "cifar-100-python", ["train"], ["test"], b"fine_labels"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in train_files + test_files:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, num_classes, per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": b"x", key: labels, b"data": data, b"filenames": [b"f"] * per_batch}, handle)
        written[name] = (data, labels)
    return written


def _devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=_devices())
def device(request):
    """Each device this machine has: the CPU everywhere, and the GPU where there is one (same tests on both)."""
    import torch

    return torch.device(request.param)


def write_learnable_mnist_like(folder: Path, num_train: int = 400, num_test: int = 100, seed: int = 0) -> dict:
    """A tiny MNIST-format dataset a model can learn (a smooth pattern per class plus noise, 28x28); returns the arrays.

    For tests that compare settings by accuracy: unlike :func:`write_mnist_like`'s noise, better settings score higher.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.random((10, 4, 4))
    prototypes = np.kron(coarse, np.ones((7, 7)))  # 28x28 blocks, one pattern per class

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % 10)
        images = np.clip(prototypes[labels] + 0.35 * rng.standard_normal((n, 28, 28)), 0, 1)
        return np.round(255 * images).astype(np.uint8), labels.astype(np.uint8)

    folder.mkdir(parents=True, exist_ok=True)
    (train_x, train_y), (test_x, test_y) = draw(num_train), draw(num_test)
    arrays = {"train_images": train_x, "train_labels": train_y, "test_images": test_x, "test_labels": test_y}
    names = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    for key, name in names.items():
        write_idx(folder / name, arrays[key])
    return arrays
