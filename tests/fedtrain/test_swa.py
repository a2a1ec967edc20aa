"""SWA: the cyclical lr, when models are collected (end of cycle vs the reference's point), the running mean."""

import pytest
import torch

from fedtrain.errors import ConfigError
from fedtrain.swa import collects, cyclic_lr, starts_swa_model, swa_average


def test_cyclic_lr_matches_the_reference_schedule():
    lrs = [cyclic_lr(t, lr=0.01, swa_lr=1e-4, cycle=10, start=20) for t in range(18, 31)]
    assert lrs[:2] == [0.01, 0.01]  # before the start
    expected = [0.00901, 0.00802, 0.00703, 0.00604, 0.00505, 0.00406, 0.00307, 0.00208, 0.00109, 0.0001]
    assert all(abs(a - b) < 1e-12 for a, b in zip(lrs[2:12], expected))
    assert abs(lrs[12] - 0.00901) < 1e-12  # next cycle
    assert cyclic_lr(25, lr=0.01, swa_lr=1e-4, cycle=1, start=20) == 0.01  # c = 1: no cycling, as the reference


def test_end_collection_takes_the_lowest_lr_rounds_and_reference_the_highest():
    end = [t for t in range(40) if collects(t, start=20, cycle=10, collect="end")]
    ref = [t for t in range(40) if collects(t, start=20, cycle=10, collect="reference")]
    assert end == [29, 39]
    assert all(cyclic_lr(t, lr=0.01, swa_lr=1e-4, cycle=10, start=20) == 1e-4 for t in end)
    assert ref == [30]
    assert starts_swa_model(20, start=20, collect="reference") and not starts_swa_model(20, start=20, collect="end")


def test_running_mean_over_a_few_rounds():
    models = [{"w": torch.tensor([float(i), 2.0 * i]), "n": torch.tensor(i)} for i in (1, 2, 6)]
    swa, count = None, 0
    for m in models:
        swa, count = swa_average(swa, count, m)
    assert count == 3 and torch.allclose(swa["w"], torch.tensor([3.0, 6.0]))
    assert int(swa["n"]) == 6  # integer counters copied from the latest model


def test_first_collection_overwrites_the_reference_copy():
    copy = {"w": torch.tensor([100.0])}
    swa, count = swa_average(copy, 0, {"w": torch.tensor([1.0])})
    assert count == 1 and torch.equal(swa["w"], torch.tensor([1.0]))



def test_an_unknown_collection_mode_is_a_configuration_error():
    with pytest.raises(ConfigError, match="collect must be one of end, reference, got 'middle'"):
        collects(3, start=0, cycle=2, collect="middle")
