"""Directions: filter normalisation to the filters' norms, seeded Gaussian draws, lines and Garipov planes."""

from __future__ import annotations

import pytest
import torch

from fedtrain.errors import ConfigError
from fedtrain.models import build_model
from landscape.surface.directions import (
    directions_sha256,
    dot,
    filter_normalize,
    interpolation_directions,
    norm,
    plane_directions,
    random_direction,
    random_directions,
)


def cnn_params(seed: int = 0) -> dict[str, torch.Tensor]:
    model = build_model("cnn", input_shape=(1, 16, 16), num_classes=10, seed=seed)
    return {n: p.detach() for n, p in model.named_parameters()}


def mlp_params(seed: int = 0, hidden: tuple[int, ...] = (8,)) -> dict[str, torch.Tensor]:
    model = build_model("mlp", input_shape=(1, 16, 16), num_classes=10, hidden=hidden, seed=seed)
    return {n: p.detach() for n, p in model.named_parameters()}


def test_filter_normalised_direction_has_each_filters_norm_and_zero_biases():
    params = cnn_params()
    direction = random_direction(params, generator=torch.Generator().manual_seed(3))
    for name, weight in params.items():
        d = direction[name]
        assert d.shape == weight.shape and d.dtype == weight.dtype
        if weight.dim() <= 1:
            assert torch.count_nonzero(d) == 0, name
        else:
            d_norms = d.double().reshape(d.shape[0], -1).norm(dim=1)
            w_norms = weight.double().reshape(weight.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(d_norms, w_norms, rtol=1e-6, atol=0)
            assert not torch.allclose(d, weight)  # a random direction, not the weights themselves


@pytest.mark.parametrize("policy", ["keep", "filter"])
def test_one_dim_policies(policy):
    params = mlp_params()
    raw = {n: torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) for n, p in params.items()}
    direction = filter_normalize(raw, params, one_dim=policy)
    bias = "net.1.bias"
    if policy == "keep":
        assert torch.equal(direction[bias], params[bias])  # Li et al.'s d = w without --xignore biasbn
    else:
        assert direction[bias].double().norm().item() == pytest.approx(params[bias].double().norm().item(), rel=1e-6)
        cosine = torch.nn.functional.cosine_similarity(direction[bias], raw[bias], dim=0)
        assert cosine.item() == pytest.approx(1.0, abs=1e-6)  # rescaled, not replaced
    with pytest.raises(ConfigError, match="one_dim must be one of"):
        filter_normalize(raw, params, one_dim="bias")


def test_random_directions_are_seeded_and_leave_the_global_rng_alone():
    params = cnn_params()
    state = torch.random.get_rng_state()
    first = random_directions(params, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = random_directions(params, seed=5)
    other = random_directions(params, seed=6)
    assert directions_sha256(first) == directions_sha256(again) != directions_sha256(other)
    assert first.info["seed"] == 5 and first.info["one_dim"] == "zero" and first.ndim == 2
    assert abs(first.info["cosine"]) < 0.05  # nearly orthogonal in high dimension
    assert all(torch.equal(first.origin[n], params[n]) for n in params)


def test_point_is_origin_plus_scaled_axes_and_does_not_modify_origin():
    params = mlp_params()
    directions = random_directions(params, seed=0)
    before = {n: t.clone() for n, t in directions.origin.items()}
    point = directions.point((0.5, -2.0))
    for name in params:
        expected = params[name] + 0.5 * directions.axes[0][name] - 2.0 * directions.axes[1][name]
        torch.testing.assert_close(point[name], expected)
        assert torch.equal(directions.origin[name], before[name])
    assert all(torch.equal(directions.point((0.0, 0.0))[n], params[n]) for n in params)


def test_params_must_be_a_dict():
    with pytest.raises(TypeError, match=r"dict\(model.named_parameters\(\)\)"):
        random_directions(list(mlp_params().values()))


def test_interpolation_line_hits_both_checkpoints():
    a, b = mlp_params(0), mlp_params(1)
    line = interpolation_directions(a, b)
    assert all(torch.equal(line.point((0.0,))[n], a[n]) for n in a)
    for name in a:
        torch.testing.assert_close(line.point((1.0,))[name], b[name], rtol=0, atol=1e-6)
    assert line.info["distance"] == pytest.approx(norm({n: b[n] - a[n] for n in a}))


def test_plane_axes_are_orthonormal_and_models_sit_at_their_coordinates():
    w = [mlp_params(s) for s in (0, 1, 2)]
    plane = plane_directions(*w)
    u, v = plane.axes
    assert norm(u) == pytest.approx(1.0, abs=1e-6) and norm(v) == pytest.approx(1.0, abs=1e-6)
    assert abs(dot(u, v)) < 1e-6
    coordinates = plane.info["model_coordinates"]
    assert coordinates[0] == [0.0, 0.0] and coordinates[1][1] == 0.0 and coordinates[2][1] > 0
    for model, xy in zip(w, coordinates):
        point = plane.point(xy)
        for name in model:
            torch.testing.assert_close(point[name], model[name], rtol=0, atol=1e-5)


def test_plane_refuses_collinear_models_and_different_architectures():
    a, b = mlp_params(0), mlp_params(1)
    midpoint = {n: 0.5 * (a[n] + b[n]) for n in a}
    with pytest.raises(ConfigError, match="lie on one line"):  # numerics know models, not checkpoints
        plane_directions(a, b, midpoint)
    with pytest.raises(ConfigError, match="identical weights"):
        plane_directions(a, a, b)
    with pytest.raises(ConfigError, match="different architectures"):
        plane_directions(a, b, mlp_params(2, hidden=(4,)))
    with pytest.raises(ConfigError, match="different architectures"):
        interpolation_directions(a, cnn_params())
    with pytest.raises(ConfigError, match="different architectures: parameter 'net.1.weight' has shape"):
        interpolation_directions(a, {n: t[:, :1] if t.dim() == 2 else t for n, t in b.items()})
