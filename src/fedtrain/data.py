"""Datasets held in memory as uint8 image tensors + int64 labels, with the paper's normalisation and batched augmentation.

Readers:
* ``fashion-mnist`` / ``mnist``: IDX files (gzipped or not). Fashion-MNIST is found by default under
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
* ``cifar10`` / ``cifar100``: the "python version" pickled batches (``cifar-10-batches-py/``,
  ``cifar-100-python/``) under ``--data-dir``; unpickled with an allow-list so a foreign file cannot run code.
* ``synthetic``: a small generated task for fast tests only; never a result.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fedtrain.config import DATASETS
from fedtrain.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = [
    "DATASETS",
    "ImageDataset",
    "Normalize",
    "load_dataset",
    "dataset_signature",
    "augment_batch",
    "augmentation_draws",
    "apply_augmentation",
    "evaluation_tensors",
    "subset_indices",
]

SYSTEM_DATA_ROOT = Path("/usr/share/datasets")

# One entry per name of fedtrain.config.DATASETS in each table (tests/fedtrain/test_config.py checks).
# Per-channel mean/std in [0, 1] units. CIFAR values are those of the FedSAM reference dataloaders;
# (Fashion-)MNIST values are the usual training-set statistics.
_NORMALISATION = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "synthetic": ((0.5,), (0.25,)),
}
_NUM_CLASSES = {"fashion-mnist": 10, "mnist": 10, "cifar10": 10, "cifar100": 100, "synthetic": 10}
_AUGMENTATION = {"fashion-mnist": "none", "mnist": "none", "cifar10": "crop-flip", "cifar100": "crop-flip", "synthetic": "none"}
# (C, H, W) of one image: what a checkpoint's model must take for its dataset (fedtrain.checkpoint checks it)
_INPUT_SHAPES = {"fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32),
                 "synthetic": (1, 16, 16)}


def dataset_signature(name: str) -> tuple[tuple[int, int, int], int]:
    """``(input_shape, num_classes)`` of a dataset, known without reading its files.

    Raises:
        ConfigError: unknown name.
    """
    if name not in _INPUT_SHAPES:
        raise ConfigError(f"Unknown dataset {name!r}. Available datasets: {', '.join(DATASETS)}.")
    return _INPUT_SHAPES[name], _NUM_CLASSES[name]


@dataclass(frozen=True)
class Normalize:
    """``(x / 255 - mean) / std`` per channel, with ``mean`` and ``std`` held as ``(1, C, 1, 1)`` float32 tensors.

    Built once per device (:meth:`ImageDataset.normalizer`), so normalising a batch on a GPU needs no
    host-to-device copy of the statistics.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> normalised float32 images, on the images' device."""
        return (images.to(torch.float32) / 255.0 - self.mean) / self.std


@dataclass(frozen=True)
class ImageDataset:
    """A train/test split held in memory.

    Images are ``uint8`` tensors of shape ``(N, C, H, W)``; labels are ``int64`` of shape ``(N,)``.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    augmentation: str
    source: str
    # False when loaded without its test split (load_dataset(test=False), a run with a validation split):
    # the test tensors are then empty and asking for them is an error, never an empty evaluation.
    has_test: bool = True

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images and labels of ``"train"`` or ``"test"``."""
        if split == "train":
            return self.train_images, self.train_labels
        if split == "test":
            if not self.has_test:
                raise ConfigError(f"The {self.name} test split was not loaded (a run with a validation split never reads it); "
                                  "load the dataset with test=True to evaluate on it.")
            return self.test_images, self.test_labels
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}.")

    def normalizer(self, device: torch.device | str = "cpu") -> Normalize:
        """The dataset's normalisation with its statistics on ``device``."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        return Normalize(mean, std)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32, ``(x / 255 - mean) / std`` per channel, on the images' device."""
        return self.normalizer(images.device)(images)

    def to(self, device: torch.device | str) -> ImageDataset:
        """The same dataset with its image and label tensors on ``device`` (uint8 images: one copy, 1 byte a pixel)."""
        return replace(self, train_images=self.train_images.to(device), train_labels=self.train_labels.to(device),
                       test_images=self.test_images.to(device), test_labels=self.test_labels.to(device))

    def describe(self) -> dict[str, object]:
        """A JSON-able description (name, sizes, shape, source) for configs and reports."""
        return {
            "name": self.name,
            "train_size": int(self.train_labels.numel()),
            "test_size": int(self.test_labels.numel()),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "augmentation": self.augmentation,
            "source": self.source,
        }


def augmentation_draws(n: int, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """The random draws of :func:`augment_batch` for ``n`` images: rows crop offset (height), crop offset (width), flip.

    Drawn from ``generator`` in a fixed order (``n`` height offsets, ``n`` width offsets, ``n`` uniforms for
    the flips), so the same generator gives the same augmentation whatever device applies it.

    Returns:
        An int64 tensor of shape ``(3, n)`` on the generator's device; the flip row holds 0 or 1.
    """
    offset_h = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    offset_w = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.stack([offset_h, offset_w, flip.to(torch.int64)])


def apply_augmentation(images: torch.Tensor, draws: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding + horizontal flip of a uint8 batch, as :func:`augmentation_draws` decided.

    Args:
        images: uint8 images ``(n, C, H, W)``.
        draws: ``(3, n)`` int64 draws on the images' device.
        padding: the zero padding on each side before cropping.

    Returns:
        The augmented uint8 batch, on the images' device.
    """
    n, c, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    offset_h, offset_w, flip = draws[0], draws[1], draws[2].to(torch.bool)
    rows = (offset_h[:, None] + torch.arange(h, device=device))[:, None, :, None]
    cols = offset_w[:, None] + torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(-1), cols)[:, None, None, :]
    batch = torch.arange(n, device=device)[:, None, None, None]
    chans = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def augment_batch(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding + random horizontal flip, applied to a whole uint8 batch at once.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` per image,
    padding with 0 before normalisation as torchvision does on PIL images. The draws come from
    ``generator`` (a CPU generator gives the same crops on every device); the crop runs on the images' device.
    """
    draws = augmentation_draws(images.shape[0], generator, padding)
    return apply_augmentation(images, draws.to(images.device), padding)


def subset_indices(num_total: int, num_examples: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random subset of ``num_examples`` out of ``num_total`` (all when None)."""
    if num_examples is None or num_examples >= num_total:
        return torch.arange(num_total)
    if num_examples < 1:
        raise ConfigError(f"The number of samples must be >= 1, got {num_examples}.")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_total, generator=generator)[:num_examples].sort().values


def evaluation_tensors(
    dataset: ImageDataset, split: str, num_examples: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 inputs and labels of a fixed subset of a split, in a fixed order, never augmented.

    This is the data every analysis (Hessian, loss surface) uses: the subset is a seeded random
    choice of ``num_examples`` samples (the whole split when None), sorted by index. The result lies on
    the dataset's device (:meth:`ImageDataset.to`).
    """
    images, labels = dataset.split(split)
    idx = subset_indices(labels.numel(), num_examples, seed).to(images.device)
    return dataset.normalize(images[idx]), labels[idx]


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, *, test: bool = True) -> ImageDataset:
    """Load a dataset by name into memory.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: where to look first. For ``cifar10``/``cifar100`` it is required: the folder that
            holds ``cifar-10-batches-py/`` (or that folder itself).
        test: also read the test split. ``False`` (a run that evaluates on a validation split, see
            :mod:`fedtrain.holdout`) neither opens nor needs the test files; the dataset's test tensors are
            then empty and :meth:`ImageDataset.split` refuses ``"test"``.

    Raises:
        ConfigError: unknown name.
        DataNotFoundError: the files are not in any searched place; the message says how to get them.
        DataFormatError: the files are truncated or not in the expected format.
    """
    if name not in _NORMALISATION:
        raise ConfigError(f"Unknown dataset {name!r}. Available datasets: {', '.join(DATASETS)}.")
    if name in ("fashion-mnist", "mnist"):
        arrays, source = _read_mnist_like(name, data_dir, test)
    elif name in ("cifar10", "cifar100"):
        arrays, source = _read_cifar(name, data_dir, test)
    else:
        arrays, source = _make_synthetic(), "generated (seed 0)"
    if not test:  # generated test data (synthetic) is dropped too: the split is absent for every dataset alike
        arrays = (arrays[0], arrays[1], arrays[0][:0], arrays[1][:0])
    mean, std = _NORMALISATION[name]
    return ImageDataset(
        name=name,
        train_images=arrays[0],
        train_labels=arrays[1],
        test_images=arrays[2],
        test_labels=arrays[3],
        mean=mean,
        std=std,
        num_classes=_NUM_CLASSES[name],
        augmentation=_AUGMENTATION[name],
        source=source,
        has_test=test,
    )


# --- IDX ((Fashion-)MNIST) -------------------------------------------------------------------------

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _candidate_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / name]
    dirs.append(SYSTEM_DATA_ROOT / name)
    return dirs


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    return None


def _read_mnist_like(
    name: str, data_dir: str | os.PathLike[str] | None, test: bool = True
) -> tuple[tuple[torch.Tensor, ...], str]:
    searched = _candidate_dirs(name, data_dir)
    wanted = _IDX_FILES if test else {k: v for k, v in _IDX_FILES.items() if k.startswith("train")}
    for folder in searched:
        found = {key: _find_idx(folder, stem) for key, stem in wanted.items()}
        if all(found.values()):
            arrays = tuple(_read_idx(path) for path in found.values())  # type: ignore[arg-type]
            train_x, train_y, test_x, test_y = arrays if test else (*arrays, arrays[0][:0], arrays[1][:0])
            for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
                if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
                    raise DataFormatError(
                        f"The {name} {split} files in {folder} do not match: images of shape "
                        f"{tuple(images.shape)} and labels of shape {tuple(labels.shape)}. Re-download the dataset."
                    )
            return (
                train_x.unsqueeze(1),
                train_y.to(torch.int64),
                test_x.unsqueeze(1),
                test_y.to(torch.int64),
            ), str(folder)
    how = (
        "On Debian/Ubuntu install it with `apt-get install -y dataset-fashion-mnist`, "
        if name == "fashion-mnist"
        else ""
    )
    raise DataNotFoundError(
        f"Could not find the {name} IDX files ({', '.join(_IDX_FILES.values())}, optionally .gz) in any of: "
        f"{', '.join(str(d) for d in searched)}. {how}or download the four files from the dataset's "
        f"canonical archive and pass their folder with --data-dir."
    )


def _read_idx(path: Path) -> torch.Tensor:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataFormatError(f"Could not read {path}: {err}. The file is truncated or corrupt; re-download it.") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataFormatError(f"{path} is not an unsigned-byte IDX file (bad magic number). Re-download it.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path} is truncated (incomplete IDX header). Re-download it.")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataFormatError(
            f"{path} holds {len(raw) - header} data bytes but its header announces {expected} "
            f"(shape {shape}). The file is truncated or corrupt; re-download it."
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy())


# --- CIFAR (python pickles) ------------------------------------------------------------------------

_CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}
_CIFAR_URL = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a foreign pickle cannot execute code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar(name: str, data_dir: str | os.PathLike[str] | None, test: bool = True) -> tuple[tuple[torch.Tensor, ...], str]:
    folder_name, train_files, test_files, label_key = _CIFAR_LAYOUT[name]
    test_files = test_files if test else []
    if data_dir is None:
        raise DataNotFoundError(
            f"{name} is read from a local copy: pass --data-dir pointing at the folder that holds "
            f"{folder_name}/ (extract {_CIFAR_URL[name]} there)."
        )
    root = Path(data_dir)
    folder = root if root.name == folder_name else root / folder_name
    missing = [f for f in train_files + test_files if not (folder / f).is_file()]
    if missing:
        raise DataNotFoundError(
            f"Could not find the {name} batches {', '.join(missing)} in {folder}. Extract "
            f"{_CIFAR_URL[name]} into {root} (it creates {folder_name}/), or pass the right --data-dir."
        )
    train = [_read_cifar_batch(folder / f, label_key) for f in train_files]
    train_x, train_y = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
    tests = [_read_cifar_batch(folder / f, label_key) for f in test_files]
    if not tests:
        return (train_x, train_y, train_x[:0], train_y[:0]), str(folder)
    return (train_x, train_y, torch.cat([x for x, _ in tests]), torch.cat([y for _, y in tests])), str(folder)


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataFormatError(
            f"{path} is not a CIFAR python-version batch ({type(err).__name__}: {err}). "
            "The file is truncated, corrupt or of another format; re-extract the canonical archive."
        ) from err
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"{path} holds data of shape {data.shape} and {labels.shape[0]} labels; expected (N, 3072) and N."
        )
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


# --- synthetic -------------------------------------------------------------------------------------


def _make_synthetic(
    num_train: int = 1200, num_test: int = 300, num_classes: int = 10, side: int = 16
) -> tuple[torch.Tensor, ...]:
    """Class prototypes (smooth random patterns) plus pixel noise, quantised to uint8. Fixed seed 0."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(num_classes, 1, 4, 4, generator=generator)
    prototypes = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=generator)]
        noise = 0.25 * torch.randn(n, 1, side, side, generator=generator)
        images = ((prototypes[labels] + noise).clamp(0, 1) * 255).round().to(torch.uint8)
        return images, labels.to(torch.int64)

    train_x, train_y = draw(num_train)
    test_x, test_y = draw(num_test)
    return train_x, train_y, test_x, test_y
