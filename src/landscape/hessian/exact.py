"""The dense Hessian of the mean loss for small models: the exact oracle of every Hessian test.

It shares no code with what it checks (``hvp``, ``operator``): its own parameter flattening, its own
batch weighting, and second derivatives by ``torch.func.hessian`` of the loss as a function of one
flat parameter vector.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, hessian

from fedtrain.errors import ConfigError

__all__ = ["dense_hessian", "DEFAULT_MAX_PARAMS"]

DEFAULT_MAX_PARAMS = 4000  # a 4000 x 4000 float64 matrix is 128 MB


def dense_hessian(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batches: Sequence[tuple[Tensor, Tensor]],
    *,
    max_params: int = DEFAULT_MAX_PARAMS,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The dense Hessian of the mean loss over ``batches``, by ``torch.func.hessian``, in ``dtype``.

    .. math:: H = \\sum_b \\frac{n_b}{N} \\nabla^2_\\theta \\ell_b(\\theta), \\qquad N = \\sum_b n_b

    Conventions (those the Hessian operator promises): an eval-mode copy of the model in ``dtype``;
    the parameters with ``requires_grad``, in ``named_parameters`` order, each flattened row-major
    and concatenated; the others held fixed.

    Args:
        model: the network (not modified).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean).
        batches: ``(inputs, targets)`` pairs.
        max_params: refuse larger models (the matrix has ``dim^2`` entries).
        dtype: compute dtype.

    Returns:
        ``(dim, dim)`` symmetric float64 matrix.

    Raises:
        ConfigError: more than ``max_params`` parameters, or no batch.
    """
    module = copy.deepcopy(model).to(dtype).eval()
    named = [(name, p.detach()) for name, p in module.named_parameters() if p.requires_grad]
    dim = sum(p.numel() for _, p in named)
    if dim > max_params:
        raise ConfigError(
            f"The dense Hessian of a model with {dim:,} parameters needs {dim * dim * 8 / 1e9:.1f} GB; it is refused "
            f"above max_params={max_params:,}. Use the Lanczos/SLQ estimators (landscape.hessian.lanczos, landscape.hessian.density) "
            "instead, or raise max_params for a model you know fits in memory."
        )
    if not batches:
        raise ConfigError("dense_hessian needs at least one (inputs, targets) batch.")
    names = [name for name, _ in named]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    flat = torch.cat([p.reshape(-1) for _, p in named])

    def loss_of_flat(vector: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
        pieces = torch.split(vector, sizes)
        params = {name: piece.view(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return loss_fn(functional_call(module, params, (inputs,)), targets)

    total_count = sum(len(targets) for _, targets in batches)
    total = torch.zeros(dim, dim, dtype=torch.float64)
    for inputs, targets in batches:
        inputs = inputs.to(dtype) if inputs.is_floating_point() else inputs
        total += (len(targets) / total_count) * hessian(loss_of_flat)(flat, inputs, targets).to(torch.float64)
    return (total + total.T) / 2
