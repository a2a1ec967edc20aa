"""The analysis settings records check every field where they are built: type, finiteness, range, consistency, size."""

from __future__ import annotations

import pytest

from fedtrain.config import MAX_SEED
from fedtrain.errors import ConfigError
from landscape.settings import MAX_GRID_POINTS, MAX_KRYLOV_BYTES, HessianSettings, SurfaceSettings, settings_from_dict


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"tol": float("nan")}, r"tol must be a positive number \(finite, --tol\), got nan"),
        ({"tol": float("inf")}, r"tol must be a positive number \(finite, --tol\), got inf"),
        ({"tol": 1.0}, r"tol \(--tol\) must be below 1, got 1.0"),
        ({"tol": "1e-3"}, r"tol must be a positive number"),
        ({"top_k": True}, r"top_k must be >= 1 \(an integer, --top-k\), got True"),
        ({"top_k": 2.0}, r"top_k must be >= 1 \(an integer, --top-k\), got 2.0"),
        ({"max_matvecs": 1, "top_k": 5}, r"max_matvecs \(--max-matvecs\) is 1 but top_k \(--top-k\) is 5.*Raise --max-matvecs to at least 5"),
        ({"trace_matvecs": 2}, r"trace_matvecs must be >= 3"),
        ({"density_steps": 0}, r"density_steps must be >= 1"),
        ({"num_examples": "abc"}, r"num_examples must be >= 1 \(an integer, --num-examples\), got 'abc'"),
        ({"batch_size": 0}, r"batch_size must be >= 1"),
        ({"trace": "yes"}, r"trace must be true or false \(--trace/--no-trace\), got 'yes'"),
        ({"density": 1}, r"density must be true or false"),
        ({"seed": -1}, r"seed \(--seed\) must be an integer from 0 to 2\*\*63 - 1"),
        ({"seed": 2**70}, r"seed \(--seed\) must be an integer from 0 to 2\*\*63 - 1.*got 1180591620717411303424"),
        ({"seed": True}, r"seed \(--seed\) must be an integer"),
        ({"split": ["train"]}, r"split must be 'train' or 'test' \(--split\), got \['train'\]"),
        ({"top_k": 10**5000, "max_matvecs": 7}, r"top_k \(--top-k\) is an integer of 16610 bits"),  # not repr's ValueError
    ],
)
def test_hessian_settings_refuse_each_bad_field_with_its_flag(changes, match):
    with pytest.raises(ConfigError, match=match):
        HessianSettings(**changes)


def test_a_huge_integer_is_described_not_printed():
    with pytest.raises(ConfigError, match="top_k \\(--top-k\\) is an integer of 16610 bits but the model has 5 parameters"):
        HessianSettings(top_k=10**5000).check_model_size(5)


def test_hessian_requests_are_checked_against_the_model_size():
    HessianSettings(top_k=277).check_model_size(277)  # every eigenvalue of a tiny model may be asked for
    with pytest.raises(ConfigError, match=r"top_k \(--top-k\) is 300 but the model has 277 parameters, hence 277 Hessian eigenvalues; ask for at most 277"):
        HessianSettings(top_k=300).check_model_size(277)
    # Lanczos keeps 2 max(2k + 30, 50) float64 vectors: top-5 on 100 million parameters is 80 GB
    with pytest.raises(ConfigError, match=r"eigensolver's Lanczos basis \(--top-k\) would hold 100 float64 vectors .* 74.5 GiB, beyond the 64 GiB"):
        HessianSettings(density=False, trace=False).check_model_size(10**8)
    with pytest.raises(ConfigError, match=r"SLQ density's Lanczos basis \(--density-steps\) would hold 2,000 float64 vectors"):
        HessianSettings(density_steps=2000).check_model_size(10**7)
    HessianSettings(density_steps=2000, density=False).check_model_size(10**7)  # no density, no SLQ basis
    limit = MAX_KRYLOV_BYTES // (8 * 100)  # the largest model whose default top-5 basis (100 vectors) fits
    HessianSettings(density=False, trace=False).check_model_size(limit)
    with pytest.raises(ConfigError, match="beyond the 64 GiB"):
        HessianSettings(density=False, trace=False).check_model_size(limit + 1)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"range": float("inf")}, r"range must be a positive number \(finite, --range\), got inf"),
        ({"range": float("nan")}, r"range must be a positive number"),
        ({"margin": float("inf")}, r"margin must be a number >= 0 \(finite, --margin\), got inf"),
        ({"margin": -0.1}, r"margin must be a number >= 0"),
        ({"steps": 1}, r"at least 2 steps"),
        ({"steps": 21.0}, r"at least 2 steps per axis \(an integer, --steps\), got 21.0"),
        ({"steps": 5000}, r"A grid of 5000 x 5000 has 25,000,000 points \(0.2 GiB per stored quantity.*at most 16,777,216 \(4096 x 4096\)"),
        ({"steps": 10**9, "dims": 1}, r"steps \(--steps\) must be at most 16,777,216, got 1000000000"),
        ({"steps": 10**5000}, r"steps \(--steps\) must be at most 16,777,216, got an integer of 16610 bits"),
        ({"dims": True}, r"dims \(--dims\) must be 1 or 2, got True"),
        ({"dims": 3}, r"dims \(--dims\) must be 1 or 2, got 3"),
        ({"splits": 5}, r"splits must be 'train' and/or 'test', got 5"),
        ({"splits": [1]}, r"splits must be 'train' and/or 'test'"),
        ({"splits": ()}, r"splits must be 'train' and/or 'test'"),
        ({"seed": -1}, r"seed \(--seed\) must be an integer from 0 to 2\*\*63 - 1"),
        ({"seed": 2**63}, r"seed \(--seed\) must be an integer from 0 to 2\*\*63 - 1"),
        ({"num_examples": 0}, r"num_examples must be >= 1"),
        ({"points_per_pass": "8"}, r"points_per_pass must be >= 1 \(an integer, --points-per-pass\), got '8'"),
        ({"batch_size": False}, r"batch_size must be >= 1"),
        ({"method": "fast"}, r"method must be one of loop, vmap"),
    ],
)
def test_surface_settings_refuse_each_bad_field_with_its_flag(changes, match):
    with pytest.raises(ConfigError, match=match):
        SurfaceSettings(**changes)


def test_the_grid_bound_is_the_largest_grid_a_surface_file_may_hold():
    from fedtrain.validate import MAX_NPZ_MEMBER_BYTES

    assert MAX_GRID_POINTS * 8 <= MAX_NPZ_MEMBER_BYTES  # every surface we compute can be read back
    assert SurfaceSettings(steps=4096).steps == 4096 and SurfaceSettings(steps=4096**2, dims=1).dims == 1
    SurfaceSettings(steps=5000, dims=1).check_grid(1)  # a line of 5,000 points is fine ...
    with pytest.raises(ConfigError, match="A grid of 5000 x 5000"):  # ... a plane through it is not
        SurfaceSettings(steps=5000, dims=1).check_grid(2)


def test_the_largest_seed_is_accepted_and_round_trips():
    for record in (HessianSettings(seed=MAX_SEED), SurfaceSettings(seed=MAX_SEED)):
        assert settings_from_dict(type(record), record.to_dict()) == record
    assert HessianSettings(seed=MAX_SEED).seeds["density"] == MAX_SEED + 2


def test_records_from_dicts_get_the_same_checks():
    with pytest.raises(ConfigError, match=r"tol must be a positive number"):
        settings_from_dict(HessianSettings, {"tol": "abc"})
    with pytest.raises(ConfigError, match=r"seed \(--seed\)"):
        settings_from_dict(SurfaceSettings, {"seed": -3})


def test_every_record_with_a_seed_takes_the_same_range():
    from landscape.federated.settings import ClientSettings
    from landscape.settings import TrackingSettings

    for cls in (HessianSettings, SurfaceSettings, TrackingSettings, ClientSettings):
        assert cls(seed=MAX_SEED).seed == MAX_SEED
        for bad in (-1, MAX_SEED + 1, 2**70, True, 1.0):
            with pytest.raises(ConfigError, match=r"seed \(--seed\) must be an integer from 0 to 2\*\*63 - 1"):
                cls(seed=bad)
