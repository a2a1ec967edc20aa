"""The exact path for small models: the dense Hessian of the mean loss, the oracle of every test."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, hessian

from fedtrain.errors import ConfigError
from landscape.hessian.hvp import Batch, LossFunction
from landscape.hessian.operator import HessianOperator

__all__ = ["dense_hessian", "DEFAULT_MAX_PARAMS"]

DEFAULT_MAX_PARAMS = 4000  # a 4000 x 4000 float64 matrix is 128 MB


def dense_hessian(
    model: nn.Module,
    loss_fn: LossFunction,
    batches: Sequence[Batch],
    *,
    max_params: int = DEFAULT_MAX_PARAMS,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The dense Hessian of the mean loss over ``batches``, by ``torch.func.hessian``, in ``dtype``.

    .. math:: H = \\sum_b \\frac{n_b}{N} \\nabla^2_\\theta \\ell_b(\\theta)

    Same conventions as :class:`~landscape.hessian.operator.HessianOperator` (private eval-mode copy of the
    model, parameters with ``requires_grad`` in ``named_parameters`` order, flattened).

    Args:
        model: the network (not modified).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean).
        batches: ``(inputs, targets)`` pairs.
        max_params: refuse larger models (the matrix has ``dim^2`` entries).
        dtype: compute dtype.

    Returns:
        ``(dim, dim)`` symmetric matrix.

    Raises:
        ConfigError: more than ``max_params`` parameters.
    """
    dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if dim > max_params:
        raise ConfigError(
            f"The dense Hessian of a model with {dim:,} parameters needs {dim * dim * 8 / 1e9:.1f} GB; it is refused "
            f"above max_params={max_params:,}. Use the Lanczos/SLQ estimators (landscape.hessian.lanczos, landscape.hessian.density) "
            "instead, or raise max_params for a model you know fits in memory."
        )
    operator = HessianOperator(model, loss_fn, batches, dtype=dtype, check_deterministic=False, method="double-backward",
                               cache_graph=False)
    flat = operator.flatten(operator.params).to(dtype)

    def loss_of_flat(vector: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
        params = operator.unflatten(vector)
        return loss_fn(functional_call(operator.model, params, (inputs,)), targets)

    total = torch.zeros(dim, dim, dtype=torch.float64)
    for (inputs, targets), count in zip(operator.batches, operator.counts):
        total += (count / operator.num_examples) * hessian(loss_of_flat)(flat, inputs, targets).to(torch.float64)
    return (total + total.T) / 2

