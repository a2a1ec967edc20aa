"""Client drift: norms, cosines with the mean update, distances, agreement and spread, on a hand-made two-client example."""

from __future__ import annotations

import math

import pytest
import torch

from fedtrain.aggregation import aggregate
from fedtrain.client import ClientUpdate
from fedtrain.errors import ConfigError
from landscape.federated.drift import client_drift, gram_matrix

# Two clients with orthogonal updates of lengths 3 and 4, holding 1 and 3 samples: the mean update is
# (0.75, 3) with norm sqrt(9.5625).
UPDATES = [{"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[0.0]])},
           {"a": torch.tensor([0.0, 4.0]), "b": torch.tensor([[0.0]])}]
COUNTS = [1, 3]
MEAN_NORM = math.sqrt(0.75**2 + 3.0**2)


def test_the_two_client_example_by_hand():
    drift = client_drift(UPDATES, COUNTS)
    assert drift.update_norms == pytest.approx([3.0, 4.0])
    assert drift.mean_update_norm == pytest.approx(MEAN_NORM)
    assert drift.cosines == pytest.approx([2.25 / (3 * MEAN_NORM), 12.0 / (4 * MEAN_NORM)])
    assert drift.distances == pytest.approx([3.75, 1.25])  # |(2.25, -3)| and |(-0.75, 1)|
    assert drift.agreement == pytest.approx(MEAN_NORM / (0.25 * 3 + 0.75 * 4))
    assert drift.variance == pytest.approx(0.25 * 3.75**2 + 0.75 * 1.25**2)
    assert [row == pytest.approx(expected) for row, expected in zip(drift.pairwise_cosines, [[1.0, 0.0], [0.0, 1.0]])] == [True, True]
    assert drift.most_divergent_pair() == (0, 1)


def test_the_mean_is_the_servers_mean():
    mean = aggregate([ClientUpdate(delta=u, num_examples=n) for u, n in zip(UPDATES, COUNTS)])
    norm = math.sqrt(sum(float((t.double() ** 2).sum()) for t in mean.values()))
    assert client_drift(UPDATES, COUNTS).mean_update_norm == pytest.approx(norm, rel=1e-12)


def test_parallel_updates_agree_fully_and_opposite_ones_cancel():
    same = client_drift([{"w": torch.tensor([1.0, 1.0])}, {"w": torch.tensor([2.0, 2.0])}], [1, 1])
    assert same.agreement == pytest.approx(1.0) and same.cosines == pytest.approx([1.0, 1.0])
    opposite = client_drift([{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([-1.0, 0.0])}], [5, 5])
    assert opposite.mean_update_norm == pytest.approx(0.0) and opposite.agreement == pytest.approx(0.0)
    assert all(math.isnan(c) for c in opposite.cosines)  # the mean update has no direction
    assert opposite.distances == pytest.approx([1.0, 1.0])


def test_most_divergent_pair_is_the_smallest_cosine():
    updates = [{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([1.0, 0.1])}, {"w": torch.tensor([-1.0, 0.2])}]
    assert client_drift(updates, [1, 1, 1]).most_divergent_pair() == (0, 2)


def test_gram_matrix_in_float64_over_chunks_matches_a_dense_product():
    generator = torch.Generator().manual_seed(0)
    updates = [{"x": torch.randn(70_000, generator=generator), "y": torch.randn(3, 4, generator=generator)} for _ in range(3)]
    flat = torch.stack([torch.cat([u["x"], u["y"].reshape(-1)]).double() for u in updates])
    torch.testing.assert_close(gram_matrix(updates), flat @ flat.T, rtol=1e-12, atol=1e-9)


def test_bad_inputs_are_refused_with_a_reason():
    with pytest.raises(ConfigError, match="at least one client update"):
        client_drift([], [])
    with pytest.raises(ConfigError, match="one positive sample count per update"):
        client_drift(UPDATES, [1])
    with pytest.raises(ConfigError, match="different parameters"):
        client_drift([{"a": torch.zeros(2)}, {"b": torch.zeros(2)}], [1, 1])
    with pytest.raises(ConfigError, match="at least two clients"):
        client_drift(UPDATES[:1], [1]).most_divergent_pair()
