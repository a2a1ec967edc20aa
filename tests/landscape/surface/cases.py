"""Shared cases of the surface tests: a tiny MLP, its parameter dict, and its checkpoint file."""

from __future__ import annotations

import os

import torch
from torch import nn

from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.models import build_model

MLP_KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [8]}


def mlp(seed: int = 0, **kwargs) -> nn.Module:
    """The tiny MLP of the surface tests, in eval mode (``kwargs`` override :data:`MLP_KWARGS`)."""
    return build_model("mlp", **{**MLP_KWARGS, **kwargs}, seed=seed).eval()


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's detached parameters, keyed by name."""
    return {n: p.detach() for n, p in model.named_parameters()}


def write_checkpoint(path: str | os.PathLike[str], model: nn.Module, **kwargs) -> str:
    """Save ``model`` as an MLP checkpoint on the synthetic dataset (``kwargs``: its model options)."""
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs={**MLP_KWARGS, **kwargs}, weights=model.state_dict(), dataset="synthetic"), path)
    return str(path)
