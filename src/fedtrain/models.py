"""Model registry: networks built by name + keyword arguments, so a checkpoint can rebuild its own model.

Every builder takes ``input_shape=(C, H, W)`` and ``num_classes`` and returns a fresh ``nn.Module``
whose weights come from PyTorch's default initialisation under the caller's RNG state (callers
seed it explicitly; see :func:`build_model`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fedtrain.errors import ConfigError

__all__ = ["MODELS", "build_model", "declared_state_dict", "check_model_fits", "count_parameters", "LeNetCNN", "MLP", "ResNet18GN"]


class LeNetCNN(nn.Module):
    """The LeNet-5-like CNN of Hsu et al. (2019) used by FedSAM (Caldarola et al., ECCV 2022).

    conv 5x5 (64) -> ReLU -> maxpool 2 -> conv 5x5 (64) -> ReLU -> maxpool 2
    -> FC 384 -> ReLU -> FC 192 -> ReLU -> FC num_classes. No padding, no BatchNorm, no dropout.
    On 3x32x32 inputs the flattened size is 64*5*5 = 1600 (797,962 parameters with 10 classes);
    on 1x28x28 it is 64*4*4 = 1024.
    """

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10) -> None:
        super().__init__()
        channels, height, width = input_shape
        side_h = ((height - 4) // 2 - 4) // 2
        side_w = ((width - 4) // 2 - 4) // 2
        if side_h < 1 or side_w < 1:
            raise ConfigError(
                f"The 'cnn' model needs images of at least 16x16 pixels; got {height}x{width}. "
                "Use the 'mlp' model for smaller inputs."
            )
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side_h * side_w, 384),
            nn.ReLU(),
            nn.Linear(384, 192),
            nn.ReLU(),
            nn.Linear(192, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """A small fully connected network (flatten -> [Linear -> tanh]* -> Linear), for fast tests and exact Hessians.

    tanh rather than ReLU keeps the loss twice differentiable everywhere, so dense-Hessian oracles are smooth.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        hidden: Sequence[int] = (32,),
    ) -> None:
        super().__init__()
        # math.prod, not a tensor: the model can then be built on the meta device (fedtrain.checkpoint sizes it so)
        sizes = [math.prod(int(s) for s in input_shape), *[int(h) for h in hidden]]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.Tanh()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _BasicBlockGN(nn.Module):
    """ResNet basic block with GroupNorm in place of BatchNorm."""

    def __init__(self, in_planes: int, planes: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.GroupNorm(groups, planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18GN(nn.Module):
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool) with GroupNorm, the usual choice in federated learning.

    BatchNorm statistics do not average well across heterogeneous clients (Hsieh et al. 2020);
    GroupNorm has no running statistics. ``groups=2`` follows FL-Simulator.
    """

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, groups: int = 2) -> None:
        super().__init__()
        channels = input_shape[0]
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False), nn.GroupNorm(groups, 64), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        in_planes = 64
        for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks.append(_BasicBlockGN(in_planes, planes, stride, groups))
            blocks.append(_BasicBlockGN(planes, planes, 1, groups))
            in_planes = planes
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


# The registry behind fedtrain.config.MODEL_NAMES (tests/fedtrain/test_config.py checks they agree).
MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": LeNetCNN,
    "mlp": MLP,
    "resnet18-gn": ResNet18GN,
}


def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    seed: int | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: one of :data:`MODELS` (``cnn``, ``mlp``, ``resnet18-gn``).
        input_shape: ``(C, H, W)`` of one input image.
        num_classes: number of output logits.
        seed: when given, the initial weights are drawn under ``torch.manual_seed(seed)`` inside a
            forked RNG, so the caller's global RNG state is left untouched.
        **kwargs: model-specific options (``hidden`` for ``mlp``, ``groups`` for ``resnet18-gn``).

    Returns:
        The model, in training mode.

    Raises:
        ConfigError: unknown name or unusable arguments.
    """
    if name not in MODELS:
        raise ConfigError(f"Unknown model {name!r}. Available models: {', '.join(sorted(MODELS))}.")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}.")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ConfigError(f"input_shape must be (channels, height, width), got {input_shape!r}.")
    try:
        if seed is None:
            return MODELS[name](input_shape=shape, num_classes=num_classes, **kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return MODELS[name](input_shape=shape, num_classes=num_classes, **kwargs)
    except TypeError as err:
        raise ConfigError(f"Bad arguments for model {name!r}: {err}.") from err


def declared_state_dict(name: str, kwargs: Mapping[str, Any], *, shown: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The state dict of model ``name`` built from ``kwargs`` on PyTorch's meta device: names, shapes and dtypes, no memory.

    What a run's options (:func:`check_model_fits`) and a checkpoint's declared model
    (:func:`fedtrain.checkpoint.load_checkpoint`) are checked against before anything is allocated.

    Raises:
        ConfigError: options the model refuses (the message shows ``shown``, by default ``kwargs``).
    """
    from fedtrain.config import shown_value

    try:
        with torch.device("meta"):
            return build_model(name, **kwargs).state_dict()
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:  # what a module's constructor raises on bad sizes
        raise ConfigError(f"Model {name!r} cannot be built from model_kwargs {shown_value(dict(kwargs if shown is None else shown))}: "
                          f"{' '.join(str(err).split())[:200].rstrip('.')}.") from err


def check_model_fits(name: str, kwargs: Mapping[str, Any], *, input_shape: Sequence[int], num_classes: int) -> int:
    """The number of values in the state dict of model ``name`` built from ``kwargs``, checked without building it.

    The model is built on PyTorch's meta device (shapes only, no memory), so a run's model options are refused
    before anything is allocated or written: they must take the dataset's ``input_shape`` and ``num_classes``
    (a model of 3 classes on 10-class labels fails only in the loss, rounds later) and declare at most
    :data:`fedtrain.validate.MAX_MODEL_VALUES` values.

    Raises:
        ConfigError: options the model refuses, a model that does not fit the data, or one beyond the size bound.
    """
    from fedtrain.config import shown_value
    from fedtrain.validate import MAX_MODEL_VALUES

    given = (list(kwargs.get("input_shape", input_shape)), kwargs.get("num_classes", num_classes))
    if given != (list(input_shape), num_classes):
        raise ConfigError(f"model_kwargs {shown_value(dict(kwargs))} give model {name!r} inputs of shape {shown_value(given[0])} "
                          f"and {shown_value(given[1])} classes, but the data have {list(input_shape)} and {num_classes}; "
                          "drop input_shape and num_classes from model_kwargs (they come from the dataset).")
    layout = declared_state_dict(name, {"input_shape": input_shape, "num_classes": num_classes, **kwargs}, shown=kwargs)
    values = sum(t.numel() for t in layout.values())
    if values > MAX_MODEL_VALUES:
        raise ConfigError(f"Model {name!r} with model_kwargs {shown_value(dict(kwargs))} has {values:,} values, more than the "
                          f"{MAX_MODEL_VALUES:,} a model may have (fedtrain.validate.MAX_MODEL_VALUES); make it smaller.")
    return values


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
