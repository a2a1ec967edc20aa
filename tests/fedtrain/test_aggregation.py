"""aggregate: the sample-weighted mean of client deltas, in float64, integer counters copied."""

import pytest
import torch

from fedtrain.aggregation import aggregate
from fedtrain.client import ClientUpdate
from fedtrain.errors import ConfigError


def test_weighted_by_client_sizes_with_unequal_clients():
    w0 = torch.tensor([1.0, 2.0, 3.0])
    w1 = torch.tensor([4.0, -1.0, 0.5])
    mean = aggregate([ClientUpdate({"w": w0}, num_examples=1), ClientUpdate({"w": w1}, num_examples=2)])
    assert torch.equal(mean["w"], ((w0.double() * 1 + w1.double() * 2) / 3).float())
    assert mean["w"].dtype == torch.float32


def test_accumulates_in_float64_so_cancellation_is_exact():
    big, small = torch.tensor([1e8]), torch.tensor([1.0])
    mean = aggregate([ClientUpdate({"w": big}, 1), ClientUpdate({"w": -big}, 1), ClientUpdate({"w": small}, 2)])
    assert torch.equal(mean["w"], torch.tensor([0.5]))  # float32 left-to-right summation would give 0


def test_integer_entries_are_copied_not_averaged():
    mean = aggregate([ClientUpdate({"n": torch.tensor(3)}, 1), ClientUpdate({"n": torch.tensor(8)}, 5)])
    assert mean["n"].dtype == torch.int64 and int(mean["n"]) == 3


def test_no_updates_is_refused():
    with pytest.raises(ValueError, match="at least one client update"):
        aggregate([])


def test_clients_without_samples_are_a_configuration_error():
    empty = ClientUpdate(delta={"w": torch.zeros(2)}, num_examples=0)
    with pytest.raises(ConfigError, match="every sampled client is empty"):
        aggregate([empty, empty])
