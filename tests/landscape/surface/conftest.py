"""Fixtures of the surface tests: subsets of the synthetic dataset."""

from __future__ import annotations

import pytest

from fedtrain.data import evaluation_tensors, load_dataset


@pytest.fixture(scope="module")
def synthetic():
    """200 train and 100 test samples of the synthetic dataset, as ``{split: (inputs, labels)}``."""
    dataset = load_dataset("synthetic")
    return {"train": evaluation_tensors(dataset, "train", 200, 0), "test": evaluation_tensors(dataset, "test", 100, 0)}
