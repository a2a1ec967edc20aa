"""The Hessian analysis of a model or a checkpoint: top eigenpairs, trace and density, in one report."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from landscape.lanczos import top_eigenpairs
from landscape.operator import HessianOperator, split_batches

__all__ = ["cross_entropy", "hessian_eigenvectors"]


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy, the training loss of every model in this toolkit."""
    return torch.nn.functional.cross_entropy(outputs, targets)


def hessian_eigenvectors(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    top_k: int = 2,
    batch_size: int = 256,
    tol: float = 1e-3,
    seed: int = 0,
) -> tuple[list[float], list[dict[str, Tensor]]]:
    """Top-``k`` eigenvalues (descending) and eigenvectors of the Hessian of the mean cross-entropy.

    The Hessian is that of the mean loss over all of ``(inputs, labels)`` (split into batches of
    ``batch_size`` only to bound memory), with BatchNorm/dropout in eval mode. The model is not
    modified. Eigenvectors have unit norm over all parameters and are returned as dicts keyed by
    parameter name, with the parameters' shapes and dtype (e.g. loss-surface directions).

    Args:
        model: the network.
        inputs: model inputs (normalised, never augmented).
        labels: class labels.
        top_k: number of eigenpairs.
        batch_size: samples per Hessian-vector product pass.
        tol: relative residual tolerance of :func:`~landscape.lanczos.top_eigenpairs`.
        seed: seed of the Lanczos start vectors.

    Returns:
        ``(eigenvalues, eigenvectors)``.
    """
    operator = HessianOperator(model, cross_entropy, split_batches(inputs, labels, batch_size))
    pairs = top_eigenpairs(operator, top_k, tol=tol, generator=torch.Generator().manual_seed(seed))
    vectors = [operator.vector_to_params(pairs.vectors[:, i]) for i in range(pairs.vectors.shape[1])]
    return [float(v) for v in pairs.values], vectors
