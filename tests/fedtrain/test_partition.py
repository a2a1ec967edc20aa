"""Partitions: sizes, determinism, alpha=0 semantics, no duplicates, hashes and the artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedtrain.errors import ConfigError, DataFormatError, DataNotFoundError
from fedtrain.partition import load_partition, make_partition, save_partition

LABELS = torch.arange(2000) % 10  # 200 samples per class


def _all_indices(p):
    return torch.cat(p.client_indices)


@pytest.mark.parametrize("scheme,alpha", [("dirichlet", 0.0), ("dirichlet", 0.05), ("dirichlet", 1.0), ("iid", None), ("dirichlet-class", 0.5)])
def test_no_sample_is_used_twice_and_indices_are_valid(scheme, alpha):
    p = make_partition(LABELS, scheme=scheme, num_clients=20, alpha=alpha, seed=3)
    idx = _all_indices(p)
    assert idx.unique().numel() == idx.numel()
    assert idx.min() >= 0 and idx.max() < LABELS.numel()
    for client, hist in zip(p.client_indices, p.label_histograms):
        assert torch.equal(torch.bincount(LABELS[client], minlength=10), hist)


@pytest.mark.parametrize("scheme,alpha", [("dirichlet", 0.0), ("dirichlet", 0.3), ("iid", None)])
def test_equal_size_schemes_give_equal_clients(scheme, alpha):
    p = make_partition(LABELS, scheme=scheme, num_clients=20, alpha=alpha, seed=0)
    assert p.num_examples == [100] * 20
    q = make_partition(LABELS, scheme=scheme, num_clients=20, alpha=alpha, seed=0, samples_per_client=30)
    assert q.num_examples == [30] * 20


def test_alpha_zero_is_one_class_per_client_spread_evenly():
    p = make_partition(LABELS, scheme="dirichlet", num_clients=20, alpha=0.0, seed=1)
    classes_per_client = (p.label_histograms > 0).sum(dim=1)
    assert torch.all(classes_per_client == 1)
    clients_per_class = (p.label_histograms > 0).sum(dim=0)
    assert torch.all(clients_per_class == 2)  # 20 clients over 10 classes
    assert p.summary()["classes_per_client"] == {"mean": 1.0, "min": 1, "max": 1}


def test_alpha_zero_on_real_fashion_mnist_matches_the_hsu_cifar10_split_shape(fashion_mnist):
    p = make_partition(fashion_mnist.train_labels, scheme="dirichlet", num_clients=100, alpha=0.0, seed=0)
    assert p.num_examples == [600] * 100
    assert torch.all((p.label_histograms > 0).sum(dim=1) == 1)
    assert torch.all((p.label_histograms > 0).sum(dim=0) == 10)  # 10 clients per class, as the CIFAR-10 alpha=0 file
    assert _all_indices(p).unique().numel() == 60000


def test_heterogeneity_decreases_with_alpha_and_large_alpha_tends_to_iid():
    means = [
        make_partition(LABELS, scheme="dirichlet", num_clients=20, alpha=a, seed=0).summary()["classes_per_client"]["mean"]
        for a in (0.01, 0.3, 1000.0)
    ]
    assert means[0] < means[1] < means[2]
    near_iid = make_partition(LABELS, scheme="dirichlet", num_clients=20, alpha=1000.0, seed=0)
    share = near_iid.label_histograms.double() / 100
    # The last clients take what is left of exhausted classes (all data are used), so test the typical client.
    assert (share - 0.1).abs().mean() < 0.03
    assert near_iid.summary()["classes_per_client"]["mean"] >= 9.5


def test_tiny_alpha_gives_no_nans_and_terminates():
    p = make_partition(LABELS, scheme="dirichlet", num_clients=20, alpha=1e-8, seed=0)
    assert p.num_examples == [100] * 20
    assert not any(torch.isnan(h.double()).any() for h in p.label_histograms)


def test_same_recipe_same_partition_and_hash_other_seed_differs():
    a = make_partition(LABELS, scheme="dirichlet", num_clients=20, alpha=0.5, seed=7)
    b = make_partition(LABELS, scheme="dirichlet", num_clients=20, alpha=0.5, seed=7)
    c = make_partition(LABELS, scheme="dirichlet", num_clients=20, alpha=0.5, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.client_indices, b.client_indices))
    assert a.hash == b.hash != c.hash
    assert len(a.hash) == 16 and int(a.hash, 16) >= 0


def test_hash_is_stable_across_versions_of_the_code():
    # A change here means partitions built by earlier versions no longer match: bump the artifact format.
    p = make_partition(torch.arange(40) % 4, scheme="iid", num_clients=4, seed=0)
    assert [idx.tolist() for idx in p.client_indices][0] == sorted(np.random.default_rng(0).permutation(40)[:10].tolist())
    assert p.hash == make_partition(torch.arange(40) % 4, scheme="iid", num_clients=4, seed=0).hash


def test_dirichlet_class_gives_unequal_sizes_covering_all_data():
    p = make_partition(LABELS, scheme="dirichlet-class", num_clients=10, alpha=0.3, seed=0)
    assert sum(p.num_examples) == LABELS.numel()
    assert len(set(p.num_examples)) > 1


def test_artifact_roundtrip_and_contents(tmp_path):
    p = make_partition(LABELS, scheme="dirichlet", num_clients=10, alpha=0.1, seed=2, dataset="toy")
    path = tmp_path / "sub" / "partition.json"
    save_partition(p, path)
    raw = json.loads(path.read_text())
    assert raw["hash"] == p.hash
    assert raw["spec"] == {"scheme": "dirichlet", "alpha": 0.1, "num_clients": 10, "samples_per_client": 200, "seed": 2, "dataset": "toy"}
    assert set(raw["summary"]["classes_per_client"]) == {"mean", "min", "max"}
    assert len(raw["clients"]) == 10 and len(raw["clients"][0]["label_histogram"]) == 10
    q = load_partition(path)
    assert q.hash == p.hash and all(torch.equal(x, y) for x, y in zip(p.client_indices, q.client_indices))
    assert [f.name for f in path.parent.iterdir()] == ["partition.json"]  # no temporary file left behind


def test_tampered_or_foreign_artifacts_are_refused(tmp_path):
    p = make_partition(LABELS, scheme="iid", num_clients=4, seed=0)
    path = tmp_path / "p.json"
    save_partition(p, path)
    raw = json.loads(path.read_text())
    raw["clients"][0]["indices"][0] += 1
    path.write_text(json.dumps(raw))
    with pytest.raises(DataFormatError, match="hash"):
        load_partition(path)
    path.write_text('{"users": []}')
    with pytest.raises(DataFormatError, match="not a fedlandscape partition"):
        load_partition(path)
    with pytest.raises(DataNotFoundError, match="No partition file"):
        load_partition(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scheme": "shards", "num_clients": 4}, "Unknown partition scheme"),
        ({"scheme": "dirichlet", "num_clients": 4}, "needs a finite alpha"),
        ({"scheme": "dirichlet", "num_clients": 4, "alpha": -1.0}, "needs a finite alpha"),
        ({"scheme": "dirichlet", "num_clients": 4, "alpha": float("nan")}, "needs a finite alpha"),
        ({"scheme": "dirichlet-class", "num_clients": 4, "alpha": 0.0}, "needs alpha > 0"),
        ({"scheme": "iid", "num_clients": 0}, "clients must be >= 1"),
        ({"scheme": "iid", "num_clients": 30, "samples_per_client": 100}, "need 3000 samples"),
        ({"scheme": "dirichlet", "num_clients": 3, "alpha": 0.0}, "larger than class"),
        ({"scheme": "dirichlet", "num_clients": 25, "alpha": 0.0, "samples_per_client": 67}, "has only 200"),
    ],
)
def test_bad_recipes_give_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_partition(LABELS, seed=0, **kwargs)
