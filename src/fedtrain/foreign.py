"""Models trained elsewhere: a plain PyTorch ``state_dict`` file, the model it belongs to and its data, as an in-memory checkpoint.

A researcher's own weights reach the analyses through the same path as this toolkit's checkpoints: a
:class:`ForeignSpec` (the model: a built-in name or ``package.module:factory``; the data: a dataset name or
``package.module:loader``) and :func:`load_foreign` turn the file into a :class:`ForeignCheckpoint`, a
:class:`~fedtrain.checkpoint.Checkpoint` whose model and data come from the spec. The analyses call
:func:`open_checkpoint` and :func:`dataset_of` and never ask where a checkpoint came from.

The file is read with ``torch.load(weights_only=True)`` (it can never run code); its tensors must match the
model's parameters and buffers name by name and shape by shape.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedtrain.checkpoint import FORMAT, Checkpoint, WeightsChoice, check_finite, load_checkpoint, read_torch_file
from fedtrain.data import ImageDataset, load_dataset
from fedtrain.errors import CheckpointError, ConfigError, DataFormatError
from fedtrain.models import MODELS, build_model
from fedtrain.plugins import is_import_path, resolve
from fedtrain.validate import UntrustedFile

__all__ = ["ForeignSpec", "ForeignCheckpoint", "TensorData", "load_state_dict_file", "load_foreign", "open_checkpoint", "dataset_of"]

# Keys under which other codebases commonly nest the state dict in a saved dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass(frozen=True)
class ForeignSpec:
    """What a plain ``state_dict`` file belongs to.

    Attributes:
        model: a built-in model name (``cnn``, ``mlp``, ``resnet18-gn``) or ``package.module:factory``, a
            callable returning the ``nn.Module`` (a class or a function) called with ``model_kwargs``.
        model_kwargs: arguments of the model; a built-in model gets ``input_shape`` and ``num_classes``
            from the data unless given.
        dataset: a dataset name of this toolkit (``fashion-mnist``, ``cifar10``, ``synthetic`` ...), or
        data: ``package.module:loader``, a callable returning ``(inputs, labels)`` tensors ready for the model
            (normalised float inputs, integer labels); called with the split name (``"train"``/``"test"``)
            when it takes an argument, else once for both splits.
    """

    model: str
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    data: str | None = None

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.data is None):
            raise ConfigError("A state_dict file needs its data: give exactly one of --dataset NAME and --data package.module:loader.")
        if not is_import_path(self.model) and self.model not in MODELS:
            raise ConfigError(f"Unknown model {self.model!r}: use one of {', '.join(sorted(MODELS))}, or "
                              "package.module:factory for a model class of your own.")
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))

    def to_dict(self) -> dict[str, Any]:
        """What a report records: model, its arguments and the data."""
        return {"model": self.model, "model_kwargs": dict(self.model_kwargs), "dataset": self.dataset, "data": self.data}


@dataclass(frozen=True)
class TensorData:
    """Data from a user's loader, with the part of :class:`~fedtrain.data.ImageDataset` the analyses use.

    The inputs are used as given: ``normalize`` is the identity (the loader returns model-ready tensors).
    """

    name: str
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    source: str = "loader"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input."""
        return tuple(next(iter(self.splits.values()))[0].shape[1:])

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of ``"train"`` or ``"test"``."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}.")
        return self.splits[split]

    def normalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` unchanged: a loader's tensors are already what the model takes."""
        return inputs

    def to(self, device: torch.device | str) -> TensorData:
        """The same data on ``device``."""
        return replace(self, splits={k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()})

    def describe(self) -> dict[str, object]:
        """A JSON-able description for reports."""
        train, test = self.splits["train"], self.splits["test"]
        return {"name": self.name, "train_size": int(train[1].numel()), "test_size": int(test[1].numel()),
                "input_shape": list(self.input_shape), "num_classes": self.num_classes, "augmentation": "none",
                "source": self.source}


@dataclass(frozen=True)
class ForeignCheckpoint(Checkpoint):
    """A :class:`~fedtrain.checkpoint.Checkpoint` read from a plain ``state_dict`` file plus a :class:`ForeignSpec`.

    ``data`` holds the dataset already loaded (it was needed to size a built-in model); :func:`dataset_of`
    returns it.
    """

    spec: ForeignSpec | None = None
    data: ImageDataset | TensorData | None = field(default=None, repr=False, compare=False)

    def build_model(self, weights: WeightsChoice = "auto") -> nn.Module:
        """A fresh model from the spec with the file's weights loaded, in eval mode.

        Raises:
            CheckpointError: the weights do not match the model's names and shapes.
            ConfigError: the factory cannot be imported or does not return an ``nn.Module``.
        """
        model = _new_model(self.model_name, self.model_kwargs)
        _check_fits(model, self.state_dict(weights), self.path, self.model_name)
        model.load_state_dict(self.state_dict(weights))
        return model.eval()

    def provenance(self) -> dict[str, Any]:
        """What a report records about where the weights came from."""
        assert self.spec is not None
        return {"source": "state_dict", **self.spec.to_dict()}


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save``-d state dict (also nested under ``state_dict``/``model_state_dict``/...).

    Raises:
        CheckpointError: missing, unreadable or unsafe file (``weights_only=True``), or no state dict inside.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"No weights file at {file}: the file does not exist. Check the path.")
    untrusted = UntrustedFile(file, "state_dict", "Save it with torch.save(model.state_dict(), path).", CheckpointError)
    raw = read_torch_file(untrusted)
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        raise CheckpointError(f"{file} is a fedlandscape checkpoint, not a plain state_dict: it knows its model and data, "
                              "so drop --model, --model-kwargs, --dataset and --data.")
    if isinstance(raw, dict) and not _is_state_dict(raw):
        nested = [raw[k] for k in _NESTED_KEYS if isinstance(raw.get(k), dict) and _is_state_dict(raw[k])]
        raw = nested[0] if nested else raw
    if not isinstance(raw, dict) or not _is_state_dict(raw):
        raise CheckpointError(
            f"{file} holds no state_dict (a dict of parameter name -> tensor, directly or under one of "
            f"{', '.join(_NESTED_KEYS)}). Save it with torch.save(model.state_dict(), path)."
        )
    check_finite(raw, untrusted)
    return dict(raw)


def load_foreign(path: str | os.PathLike[str], spec: ForeignSpec, data_dir: str | os.PathLike[str] | None = None) -> ForeignCheckpoint:
    """A plain ``state_dict`` file as a checkpoint: its model built from ``spec`` and checked against the weights.

    Raises:
        CheckpointError: unreadable file, or weights that do not fit the model (names and shapes listed).
        ConfigError, DataNotFoundError, DataFormatError: an unusable model, factory, dataset or loader.
    """
    weights = load_state_dict_file(path)
    data = _load_data(spec, data_dir)
    kwargs = dict(spec.model_kwargs)
    if not is_import_path(spec.model):
        kwargs = {"input_shape": list(data.input_shape), "num_classes": int(data.num_classes), **kwargs}
    checkpoint = ForeignCheckpoint(
        model_name=spec.model, model_kwargs=kwargs, weights=weights,
        dataset=spec.dataset if spec.dataset is not None else f"loader {spec.data}",
        data_dir=None if data_dir is None else str(data_dir), path=Path(path), spec=spec, data=data,
    )
    checkpoint.build_model()  # the weights must fit the model before any analysis starts
    return checkpoint


def open_checkpoint(path: str | os.PathLike[str], foreign: ForeignSpec | None = None,
                    data_dir: str | os.PathLike[str] | None = None) -> Checkpoint:
    """The checkpoint at ``path``: a toolkit checkpoint, or with ``foreign`` a plain state dict (:func:`load_foreign`).

    Raises:
        CheckpointError: an unusable file; a plain state dict without ``foreign`` is named as such, with the fix.
    """
    if foreign is not None:
        return load_foreign(path, foreign, data_dir)
    try:
        return load_checkpoint(path)
    except CheckpointError:
        if not _plain_state_dict(path):
            raise
    raise CheckpointError(
        f"{path} is a plain PyTorch state_dict, not a fedlandscape checkpoint: it does not say which model and data "
        "it belongs to. Add --model (cnn, mlp, resnet18-gn, or package.module:factory for your own class) and "
        "--dataset NAME or --data package.module:loader."
    )


def _plain_state_dict(path: str | os.PathLike[str]) -> bool:
    try:
        load_state_dict_file(path)
    except CheckpointError:
        return False
    return True


def dataset_of(checkpoint: Checkpoint, data_dir: str | os.PathLike[str] | None = None) -> ImageDataset | TensorData:
    """The data of ``checkpoint``: what a foreign one was opened with, else its dataset (``data_dir`` first)."""
    if isinstance(checkpoint, ForeignCheckpoint) and checkpoint.data is not None:
        return checkpoint.data
    return load_dataset(checkpoint.dataset, data_dir if data_dir is not None else checkpoint.data_dir)


def _is_state_dict(value: dict[Any, Any]) -> bool:
    return bool(value) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _new_model(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    if not is_import_path(name):
        return build_model(name, **kwargs)
    factory = resolve(name, what="model factory", option="--model")
    if not callable(factory):
        raise ConfigError(f"--model {name!r} names a {type(factory).__name__}, not a class or function that builds the model.")
    try:
        model = factory(**kwargs)
    except TypeError as err:
        raise ConfigError(f"--model {name!r} could not be called with {dict(kwargs)} ({err}). Pass its arguments with --model-kwargs.") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model {name!r} returned a {type(model).__name__}, not a torch.nn.Module.")
    return model


def _check_fits(model: nn.Module, weights: Mapping[str, torch.Tensor], path: Path | None, name: str) -> None:
    """The weights have exactly the model's tensors, each of its shape; else one paragraph listing the first differences."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    problems = [f"{k} is missing" for k in expected if k not in found]
    problems += [f"{k} is not in the model" for k in found if k not in expected]
    problems += [f"{k} has shape {list(found[k])}, the model {list(expected[k])}" for k in expected
                 if k in found and found[k] != expected[k]]
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise CheckpointError(
            f"The weights in {path or 'the state_dict'} do not fit model {name!r}: {'; '.join(problems[:4])}{more}. "
            "Pass the model they were trained with (--model and --model-kwargs) and the data it takes."
        )


def _load_data(spec: ForeignSpec, data_dir: str | os.PathLike[str] | None) -> ImageDataset | TensorData:
    if spec.dataset is not None:
        return load_dataset(spec.dataset, data_dir)
    assert spec.data is not None
    loader = resolve(spec.data, what="data loader", option="--data")
    if not callable(loader):
        raise ConfigError(f"--data {spec.data!r} names a {type(loader).__name__}, not a function returning (inputs, labels).")
    if _takes_an_argument(loader):
        splits = {split: _checked(loader(split), spec.data, split) for split in ("train", "test")}
    else:
        both = _checked(loader(), spec.data, "train and test")
        splits = {"train": both, "test": both}
    num_classes = max(int(labels.max()) + 1 for _, labels in splits.values())
    return TensorData(name=spec.data, splits=splits, num_classes=num_classes)


def _takes_an_argument(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in parameters)


def _checked(value: Any, spec: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader's ``(inputs, labels)``: float inputs, 1-D integer labels of the same length, at least one sample."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, torch.Tensor) for v in value)):
        raise DataFormatError(f"--data {spec!r} returned {type(value).__name__} for {split}; it must return a pair of "
                              "tensors (inputs, labels).")
    inputs, labels = value
    if not inputs.is_floating_point() or labels.is_floating_point() or labels.ndim != 1 or len(inputs) != len(labels) or len(labels) == 0:
        raise DataFormatError(
            f"--data {spec!r} returned inputs {inputs.dtype} {list(inputs.shape)} and labels {labels.dtype} "
            f"{list(labels.shape)} for {split}; it must return float inputs (N, ...) and integer class labels (N,), N >= 1."
        )
    if int(labels.min()) < 0:
        raise DataFormatError(f"--data {spec!r} returned negative labels for {split}; labels are class indices 0..C-1.")
    return inputs.detach(), labels.detach().to(torch.int64)
