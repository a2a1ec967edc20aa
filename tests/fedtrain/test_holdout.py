"""The validation split: held out before the partition, disjoint from every client, evaluated instead of the test split, which is never read."""

from __future__ import annotations

import json

import pytest
import torch

from fedtrain.config import TrainConfig
from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.errors import ConfigError
from fedtrain.holdout import evaluation_set, evaluation_split, holdout_indices, remaining_indices
from fedtrain.partition import load_partition, make_partition, save_partition
from fedtrain.run import TIMING_FIELDS, train
from tests.conftest import write_learnable_mnist_like
from tests.fedtrain.test_run import _one_thread  # noqa: F401 (autouse fixture: one torch thread, restored)


def test_holdout_is_a_seeded_sorted_draw_without_repeats():
    held = holdout_indices(1000, 100, seed=3)
    assert held.numel() == 100 and torch.equal(held, held.sort().values) and held.unique().numel() == 100
    assert int(held.min()) >= 0 and int(held.max()) < 1000
    assert torch.equal(held, holdout_indices(1000, 100, seed=3))
    assert not torch.equal(held, holdout_indices(1000, 100, seed=4))
    rest = remaining_indices(1000, held)
    assert rest.numel() == 900 and not set(rest.tolist()) & set(held.tolist())


@pytest.mark.parametrize("size", [0, 1000, 5000, -1, True, 2.5])
def test_a_holdout_that_leaves_nothing_or_is_not_a_count_is_refused(size):
    with pytest.raises(ConfigError, match=r"validation \(--validation\) must hold out between 1 and 999 of the 1000"):
        holdout_indices(1000, size, seed=0)


@pytest.mark.parametrize("scheme, alpha", [("dirichlet", 0.0), ("dirichlet", 0.5), ("iid", None), ("dirichlet-class", 1.0)])
def test_no_client_holds_a_validation_example(scheme, alpha):
    labels = torch.arange(1200) % 10
    spc = None if scheme == "dirichlet-class" else 40
    partition = make_partition(labels, scheme=scheme, alpha=alpha, num_clients=20, samples_per_client=spc, seed=5, validation=300)
    held = set(holdout_indices(1200, 300, seed=5).tolist())
    dealt = torch.cat(partition.client_indices).tolist()
    assert not held & set(dealt)
    assert len(dealt) == len(set(dealt))  # still no example twice
    for idx, hist in zip(partition.client_indices, partition.label_histograms):  # histograms count whole-split labels
        assert torch.equal(torch.bincount(labels[idx], minlength=10), hist)
    assert partition.spec["validation"] == 300


def test_validation_zero_is_the_partition_of_before():
    labels = torch.arange(600) % 10
    before = make_partition(labels, scheme="dirichlet", alpha=0.0, num_clients=10, samples_per_client=30, seed=1)
    assert "validation" not in before.spec  # so the hashes of partitions without a split are unchanged
    assert before.hash == make_partition(labels, scheme="dirichlet", alpha=0.0, num_clients=10, samples_per_client=30,
                                         seed=1, validation=0).hash


def test_the_default_shard_size_splits_only_what_is_left():
    partition = make_partition(torch.arange(1000) % 10, scheme="iid", num_clients=10, seed=0, validation=200)
    assert partition.num_examples == [80] * 10


def test_the_artifact_records_the_validation_split_and_round_trips(tmp_path):
    partition = make_partition(torch.arange(600) % 10, scheme="dirichlet", alpha=0.5, num_clients=5,
                               samples_per_client=40, seed=2, validation=100)
    save_partition(partition, tmp_path / "p.json")
    loaded = load_partition(tmp_path / "p.json")
    assert loaded.validation == 100 and loaded.hash == partition.hash


def test_a_validation_split_that_leaves_too_few_examples_for_the_clients_says_so():
    with pytest.raises(ConfigError, match=r"With 500 of the 1000 training examples held out for validation "
                                          r"\(--validation\), 500 are left for the clients.*Or lower --validation"):
        make_partition(torch.arange(1000) % 10, scheme="iid", num_clients=10, samples_per_client=60, seed=0, validation=500)


def test_the_config_takes_a_count_and_defaults_to_none():
    assert TrainConfig().validation == 0 and evaluation_split(TrainConfig()) == "test"
    assert TrainConfig.from_dict({k: v for k, v in TrainConfig().to_dict().items() if k != "validation"}) == TrainConfig()
    assert evaluation_split(TrainConfig(validation=10)) == "validation"
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(ConfigError, match=r"validation \(--validation\) must be an integer >= 0"):
            TrainConfig(validation=bad)


def test_the_evaluation_set_is_the_held_out_training_examples_or_the_test_split():
    dataset = load_dataset("synthetic")
    held = holdout_indices(1200, 150, seed=7)
    x, y = evaluation_set(TrainConfig(dataset="synthetic", seed=7, validation=150), dataset)
    assert torch.equal(y, dataset.train_labels[held]) and torch.equal(x, dataset.normalize(dataset.train_images[held]))
    x, y = evaluation_set(TrainConfig(dataset="synthetic", seed=7, validation=150, eval_examples=40), dataset)
    assert y.numel() == 40 and set(x.flatten(1).sum(1).tolist()) <= set(dataset.normalize(dataset.train_images[held]).flatten(1).sum(1).tolist())
    x, y = evaluation_set(TrainConfig(dataset="synthetic", seed=7, eval_examples=40), dataset)
    tx, ty = evaluation_tensors(dataset, "test", 40, seed=7)
    assert torch.equal(x, tx) and torch.equal(y, ty)


def test_a_dataset_loaded_without_its_test_split_needs_no_test_files_and_refuses_to_give_one(tmp_path):
    write_learnable_mnist_like(tmp_path / "data", num_train=60, num_test=20)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / "data" / name).unlink()
    dataset = load_dataset("mnist", tmp_path / "data", test=False)
    assert dataset.train_labels.numel() == 60 and dataset.test_labels.numel() == 0 and not dataset.has_test
    with pytest.raises(ConfigError, match="test split was not loaded"):
        dataset.split("test")
    assert not load_dataset("synthetic", test=False).has_test


def _run(tmp_path, data_dir, name: str) -> tuple[list[dict], dict]:
    config = TrainConfig(dataset="mnist", data_dir=str(data_dir), model="mlp", model_kwargs={"hidden": [16]}, partition="iid",
                         num_clients=4, samples_per_client=50, clients_per_round=2, rounds=4, batch_size=25, lr=0.1,
                         eval_every=2, last_k=2, seed=1, validation=100, device="cpu")
    summary = train(config, tmp_path / name)
    lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines], summary


def test_a_run_with_a_validation_split_never_reads_the_test_split(tmp_path):
    write_learnable_mnist_like(tmp_path / "clean", num_train=400, num_test=100)
    write_learnable_mnist_like(tmp_path / "poisoned", num_train=400, num_test=100)
    (tmp_path / "poisoned" / "t10k-labels-idx1-ubyte").write_bytes(b"garbage, not an IDX file")
    (tmp_path / "poisoned" / "t10k-images-idx3-ubyte").unlink()
    clean, summary = _run(tmp_path, tmp_path / "clean", "a")
    poisoned, _ = _run(tmp_path, tmp_path / "poisoned", "b")
    assert clean == poisoned
    assert all(m["eval_split"] == "validation" for m in clean)
    assert summary["eval_split"] == "validation" and summary["validation"] == 100
    with pytest.raises(Exception, match="bad magic number|Could not find"):  # what reading the poisoned test split would do
        load_dataset("mnist", tmp_path / "poisoned")
