"""Points per pass and batch size: the user's values, today's CPU defaults, or a choice from (made-up) free GPU memory."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from fedtrain.errors import ConfigError
from landscape.surface.passes import (
    ACTIVATION_FACTOR,
    INT32_ELEMENTS,
    MEMORY_FRACTION,
    POINT_COPIES,
    activation_footprint,
    fixed_or_cpu_defaults,
    plan_by_memory,
    plan_passes,
)
from tests.landscape.surface.cases import mlp

GB = 10**9
# The paper's CIFAR-10 CNN (797,962 float32 parameters), ~300 kB of layer outputs per sample, its first
# convolution's output (64 x 28 x 28) the largest; 10,000 samples, a 41 x 41 grid.
PAPER = {"param_bytes": 3_191_848, "activation_bytes": 300_000, "largest_activation": 50_176, "num_examples": 10_000,
         "num_points": 41 * 41}


def test_the_cpu_keeps_todays_defaults_and_fixed_values_are_kept():
    assert fixed_or_cpu_defaults(None, None).__dict__ == {"points_per_pass": 8, "batch_size": 64, "chosen_by": "cpu defaults",
                                                          "memory": None}
    assert (fixed_or_cpu_defaults(500, None).batch_size, fixed_or_cpu_defaults(500, None).points_per_pass) == (500, 8)
    assert fixed_or_cpu_defaults(500, 3).chosen_by == "settings"
    model, sample = mlp(), torch.zeros(1, 16, 16)
    cpu = plan_passes(model, sample, torch.device("cpu"), num_examples=10, num_points=9, resident_bytes=0)
    assert (cpu.points_per_pass, cpu.batch_size, cpu.chosen_by) == (8, 64, "cpu defaults")
    fixed = plan_passes(model, sample, torch.device("cuda"), num_examples=10, num_points=9, resident_bytes=0,
                        batch_size=5, points_per_pass=2)  # both fixed: no memory is asked for, even on a GPU
    assert (fixed.points_per_pass, fixed.batch_size, fixed.chosen_by) == (2, 5, "settings")


def test_the_paper_surface_on_an_80_gb_gpu():
    plan = plan_by_memory(free_bytes=80 * GB, resident_bytes=0, **PAPER)
    # budget 40 GB; 32-bit indexing allows 2**31 // 50,176 = 42,799 sample-points per call, so with room for
    # 8 points a batch holds 5,349 samples, evened out to two batches of 5,000; then 8 points fit.
    assert (plan.points_per_pass, plan.batch_size, plan.chosen_by) == (8, 5000, "free memory")
    assert plan.memory["budget_bytes"] == 40 * GB and plan.to_dict()["memory"]["free_bytes"] == 80 * GB


def test_a_fixed_batch_size_gets_as_many_points_as_fit():
    plan = plan_by_memory(free_bytes=80 * GB, resident_bytes=0, batch_size=500, **PAPER)
    assert (plan.points_per_pass, plan.batch_size) == (64, 500)  # 85 would fit the index limit; 64 is the cap
    plan = plan_by_memory(free_bytes=80 * GB, resident_bytes=0, points_per_pass=32, **PAPER)
    assert (plan.points_per_pass, plan.batch_size) == (32, 1250)  # 42,799 // 32 = 1,337 -> 8 batches of 1,250


def test_little_free_memory_gives_small_even_batches_and_too_little_is_refused():
    plan = plan_by_memory(free_bytes=2 * GB + 10**8, resident_bytes=10**8, **PAPER)
    # budget 1 GB: (1e9 - 8 points' parameters) // (8 x 600 kB) = 197 samples -> 51 batches of 197 (the last 150)
    assert (plan.points_per_pass, plan.batch_size) == (8, 197)
    with pytest.raises(ConfigError, match="too little to evaluate even one grid point.*--device cpu"):
        plan_by_memory(free_bytes=10**6, resident_bytes=0, **PAPER)


def test_small_grids_and_small_subsets_bound_the_choice():
    plan = plan_by_memory(free_bytes=80 * GB, resident_bytes=0, **{**PAPER, "num_points": 3, "num_examples": 300})
    assert (plan.points_per_pass, plan.batch_size) == (3, 300)


@pytest.mark.parametrize(("free", "batch", "points"), list(itertools.product((3 * GB, 16 * GB, 140 * GB), (None, 256), (None, 4))))
def test_chosen_values_fit_the_budget_and_32_bit_indexing(free, batch, points):
    plan = plan_by_memory(free_bytes=free, resident_bytes=GB, batch_size=batch, points_per_pass=points, **PAPER)
    budget = MEMORY_FRACTION * (free - GB)
    used = plan.points_per_pass * (POINT_COPIES * PAPER["param_bytes"] + plan.batch_size * ACTIVATION_FACTOR * PAPER["activation_bytes"])
    assert used <= budget and plan.points_per_pass * plan.batch_size * PAPER["largest_activation"] <= INT32_ELEMENTS
    assert plan.batch_size <= PAPER["num_examples"] and 1 <= plan.points_per_pass <= 64
    assert (batch is None or plan.batch_size == batch) and (points is None or plan.points_per_pass == points)


def test_activation_footprint_sums_the_layer_outputs_of_one_sample_and_leaves_the_model_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 8), nn.Tanh(), nn.Linear(8, 10)).train()
    total, largest = activation_footprint(model, torch.zeros(1, 16, 16))
    assert (total, largest) == ((256 + 8 + 8 + 10) * 4, 256)
    assert model.training and not any(m._forward_hooks for m in model.modules())
