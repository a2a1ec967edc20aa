"""Model registry: the paper's CNN parameter counts, input adaptation, seeding, errors."""

from __future__ import annotations

import pytest
import torch

from fedtrain.errors import ConfigError
from fedtrain.models import MODELS, build_model, count_parameters


def test_paper_cnn_has_the_published_parameter_counts():
    assert count_parameters(build_model("cnn", input_shape=(3, 32, 32), num_classes=10)) == 797_962
    assert count_parameters(build_model("cnn", input_shape=(3, 32, 32), num_classes=100)) == 815_332


def test_paper_cnn_adapts_to_fashion_mnist_inputs():
    model = build_model("cnn", input_shape=(1, 28, 28), num_classes=10)
    # Only the first conv (1 input channel) and the first FC (64*4*4 = 1024 inputs) change.
    assert count_parameters(model) == 797_962 - 2 * 64 * 25 - (1600 - 1024) * 384
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_images_to_logits(name):
    model = build_model(name, input_shape=(3, 32, 32), num_classes=7, seed=0)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_resnet18_gn_uses_group_norm_only():
    model = build_model("resnet18-gn", input_shape=(3, 32, 32), num_classes=10)
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.GroupNorm in kinds
    assert not any(issubclass(k, torch.nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert 11_000_000 < count_parameters(model) < 11_300_000


def test_seeded_builds_are_identical_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model("mlp", input_shape=(1, 16, 16), num_classes=10, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_model("mlp", input_shape=(1, 16, 16), num_classes=10, seed=3)
    c = build_model("mlp", input_shape=(1, 16, 16), num_classes=10, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.state_dict()["net.1.weight"], c.state_dict()["net.1.weight"])


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("vgg", {}, "Unknown model 'vgg'"),
        ("cnn", {"input_shape": (1, 8, 8)}, "at least 16x16"),
        ("mlp", {"input_shape": (16, 16)}, "channels, height, width"),
        ("mlp", {"num_classes": 0}, "num_classes must be >= 1"),
        ("mlp", {"depth": 3}, "Bad arguments for model 'mlp'"),
    ],
)
def test_bad_model_requests_give_clear_errors(name, kwargs, match):
    args = {"input_shape": (1, 28, 28), "num_classes": 10, **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_model(name, **args)


def test_model_options_are_checked_on_the_meta_device_before_anything_is_allocated():
    import torch

    from fedtrain.errors import ConfigError
    from fedtrain.models import check_model_fits

    before = torch.get_rng_state()
    assert check_model_fits("mlp", {"hidden": [4]}, input_shape=[1, 16, 16], num_classes=10) == 256 * 4 + 4 + 4 * 10 + 10
    assert check_model_fits("cnn", {}, input_shape=[3, 32, 32], num_classes=10) == 797_962  # the paper's CNN
    assert torch.equal(before, torch.get_rng_state())  # no draw: a run's numbers stay bit-identical
    cases = [
        ({"hidden": "abc"}, r"Model 'mlp' cannot be built from model_kwargs \{'hidden': 'abc'\}"),
        ({"hidden": [-3]}, r"cannot be built from model_kwargs .*negative dimension"),
        ({"bogus": 1}, r"cannot be built .*unexpected keyword argument 'bogus'"),
        ({"hidden": [100_000_000]}, r"has 26,700,000,010 values, more than the 100,000,000 a model may have"),  # 107 GB, never allocated
        ({"num_classes": 3}, r"3 classes, but the data have \[1, 16, 16\] and 10; drop input_shape and num_classes"),
        ({"input_shape": [1, 2, 2]}, r"inputs of shape \[1, 2, 2\]"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ConfigError, match=match):
            check_model_fits("mlp", kwargs, input_shape=[1, 16, 16], num_classes=10)
