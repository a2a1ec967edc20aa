"""Dataset readers (IDX, CIFAR pickles, the real Fashion-MNIST), normalisation, batched augmentation, errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from fedtrain.data import apply_augmentation, augment_batch, augmentation_draws, evaluation_tensors, load_dataset, subset_indices
from fedtrain.errors import ConfigError, DataFormatError, DataNotFoundError
from tests.conftest import write_cifar, write_mnist_like


def test_real_fashion_mnist_is_complete_and_balanced(fashion_mnist):
    ds = fashion_mnist
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.train_labels.dtype == torch.int64
    assert torch.equal(torch.bincount(ds.train_labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.test_labels), torch.full((10,), 1000))
    x = ds.normalize(ds.train_images[:5000])
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05  # the normalisation constants fit


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_reads_written_files_exactly(tmp_path, gz):
    arrays = write_mnist_like(tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert torch.equal(ds.train_images[:, 0], torch.from_numpy(arrays["train_images"].astype(np.uint8)))
    assert torch.equal(ds.test_labels, torch.from_numpy(arrays["test_labels"]).long())
    assert ds.source == str(tmp_path) and ds.input_shape == (1, 28, 28)


def test_data_dir_may_hold_a_folder_named_after_the_dataset(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist")
    assert load_dataset("fashion-mnist", tmp_path).source == str(tmp_path / "fashion-mnist")


def test_truncated_idx_file_is_reported(tmp_path):
    write_mnist_like(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFormatError, match="truncated"):
        load_dataset("mnist", tmp_path)


def test_missing_mnist_names_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "--data-dir" in str(err.value)


@pytest.mark.parametrize("num_classes,name", [(10, "cifar10"), (100, "cifar100")])
def test_cifar_reader_reads_python_batches(tmp_path, num_classes, name):
    written = write_cifar(tmp_path, num_classes=num_classes)
    ds = load_dataset(name, tmp_path)
    first = next(iter(written.values()))
    assert ds.train_images.shape[1:] == (3, 32, 32)
    assert torch.equal(ds.train_images[0], torch.from_numpy(first[0][0].reshape(3, 32, 32)))
    assert ds.train_labels[: len(first[1])].tolist() == first[1]
    assert ds.num_classes == num_classes and ds.augmentation == "crop-flip"
    assert ds.train_labels.numel() == (60 if num_classes == 10 else 12)


def test_cifar_needs_a_data_dir_and_names_the_archive(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10")
    with pytest.raises(DataNotFoundError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_foreign_pickle_cannot_run_code(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump({b"data": _Exploit(), b"labels": []}, handle)
    with pytest.raises(DataFormatError, match="refusing to load"):
        load_dataset("cifar10", tmp_path)


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="fashion-mnist"):
        load_dataset("imagenet")


def test_augmentation_is_a_shifted_crop_or_its_mirror():
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)  # no zeros, so padding is recognisable
    out = augment_batch(images, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(images.shape[0]):
        matches = [
            (dy, dx, flip)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal(out[i], (lambda c: c.flip(-1) if flip else c)(padded[i, :, dy : dy + 8, dx : dx + 8]))
        ]
        assert matches, f"sample {i} is not a crop of its padded image"
    flips = sum(not torch.equal(out[i], padded[i, :, 2:10, 2:10]) for i in range(64))
    assert flips > 32  # most samples are moved or mirrored


def test_augmentation_depends_only_on_the_generator():
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    a = augment_batch(images, torch.Generator().manual_seed(5))
    b = augment_batch(images, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_evaluation_subset_is_seeded_sorted_and_unaugmented():
    ds = load_dataset("synthetic")
    x1, y1 = evaluation_tensors(ds, "test", 50, seed=1)
    x2, y2 = evaluation_tensors(ds, "test", 50, seed=1)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    idx = subset_indices(300, 50, seed=1)
    assert torch.equal(idx, idx.sort().values) and idx.unique().numel() == 50
    assert torch.equal(x1, ds.normalize(ds.test_images[idx]))
    x_all, _ = evaluation_tensors(ds, "test")
    assert x_all.shape[0] == 300
    with pytest.raises(ConfigError, match="split must be"):
        evaluation_tensors(ds, "validation")


def test_augmentation_on_a_device_uses_the_cpu_generator_and_crops_the_same(device):
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    expected = augment_batch(images, torch.Generator().manual_seed(5))
    on_device = augment_batch(images.to(device), torch.Generator().manual_seed(5))  # a CPU generator drives it
    assert on_device.device.type == device.type and torch.equal(on_device.cpu(), expected)
    draws = augmentation_draws(16, torch.Generator().manual_seed(5))
    assert draws.shape == (3, 16) and draws.dtype == torch.int64 and set(draws[2].tolist()) <= {0, 1}
    assert torch.equal(apply_augmentation(images.to(device), draws.to(device)).cpu(), expected)


def test_a_dataset_moves_to_a_device_and_normalises_there(device):
    ds = load_dataset("synthetic")
    moved = ds.to(device)
    assert moved.train_images.device.type == device.type and moved.train_images.dtype == torch.uint8
    assert moved.describe() == ds.describe() and ds.train_images.device.type == "cpu"  # the original stays
    x, y = evaluation_tensors(moved, "test", 50, seed=1)
    x_cpu, y_cpu = evaluation_tensors(ds, "test", 50, seed=1)
    assert x.device.type == device.type and torch.equal(y.cpu(), y_cpu)
    torch.testing.assert_close(x.cpu(), x_cpu, rtol=0, atol=1e-6)  # a GPU may divide by 255 as a multiplication
    normalize = ds.normalizer(device)
    assert normalize.mean.device.type == device.type
    torch.testing.assert_close(normalize(moved.train_images[:8]).cpu(), ds.normalize(ds.train_images[:8]), rtol=0, atol=1e-6)
