"""Top-k eigenpairs by power iteration with deflation: the PyHessian-style reference solver.

Each eigenpair is found by its own power iteration (Golub & Van Loan §7.3.1), started from a random
vector kept orthogonal to the pairs already found (deflation by reorthogonalisation, as in
PyHessian, Yao et al. 2020). Power iteration converges to the eigenvalue of largest *magnitude* in
the deflated space at rate ``|lambda_2 / lambda_1|`` and needs a full new run per eigenvalue; it is
kept as a reference for :func:`landscape.hessian.lanczos.top_eigenpairs`, which is faster and more accurate.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from fedtrain.errors import ConfigError
from landscape.hessian.krylov import orthogonalize, random_unit_vector
from landscape.hessian.lanczos import Eigenpairs
from landscape.hessian.operator import LinearOperator, as_operator

__all__ = ["power_iteration_eigenpairs"]


def power_iteration_eigenpairs(
    operator: LinearOperator | Tensor,
    k: int,
    *,
    tol: float = 1e-3,
    max_matvecs: int = 1000,
    generator: torch.Generator | None = None,
    stop: Literal["rayleigh", "residual"] = "rayleigh",
) -> Eigenpairs:
    """The ``k`` largest-magnitude eigenpairs by deflated power iteration.

    Args:
        operator: a :class:`~landscape.hessian.operator.LinearOperator` or a dense symmetric ``Tensor``.
        k: number of eigenpairs.
        tol: ``stop="rayleigh"``: PyHessian's rule, stop when the Rayleigh quotient changes by less
            than ``tol`` relative (``|mu_t - mu_{t-1}| / (|mu_{t-1}| + 1e-6) < tol``);
            ``stop="residual"``: stop when ``||H v - mu v|| <= tol |mu|``.
        max_matvecs: total budget of products over all ``k`` runs, shared equally.
        generator: source of the random start vectors (default: seed 0).
        stop: stopping rule, see ``tol``.

    Returns:
        :class:`Eigenpairs` sorted by descending value (vectors on the operator's device); ``converged`` is judged by the true residual
        ``<= tol |mu|`` whatever the stopping rule.

    Raises:
        ConfigError: ``k`` outside ``[1, dim]`` or unknown ``stop``.
    """
    op = as_operator(operator)
    if not 1 <= k <= op.dim:
        raise ConfigError(f"k must be between 1 and the operator dimension {op.dim}, got {k}.")
    if stop not in ("rayleigh", "residual"):
        raise ConfigError(f"stop must be 'rayleigh' or 'residual', got {stop!r}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    per_pair = max(2, max_matvecs // k)
    found = torch.zeros(op.dim, 0, dtype=torch.float64, device=op.device)
    values, residuals, used = [], [], 0
    for _ in range(k):
        vector = random_unit_vector(op.dim, generator, found, device=op.device)
        previous, value, residual = None, 0.0, float("inf")
        for _ in range(per_pair):
            product = op.matvec(vector)
            used += 1
            value = float(vector @ product)
            residual = float((product - value * vector).norm())
            if stop == "rayleigh" and previous is not None and abs(value - previous) / (abs(previous) + 1e-6) < tol:
                break
            if stop == "residual" and residual <= tol * abs(value):
                break
            previous = value
            product = orthogonalize(product, found)
            vector = product / product.norm()
        found = torch.cat([found, vector[:, None]], dim=1)
        values.append(value)
        residuals.append(residual)
    value_tensor = torch.tensor(values, dtype=torch.float64)
    order = torch.argsort(value_tensor, descending=True)
    residual_tensor = torch.tensor(residuals, dtype=torch.float64)[order]
    return Eigenpairs(
        values=value_tensor[order],
        vectors=found[:, order.to(op.device)],
        residuals=residual_tensor,
        converged=[bool(r <= tol * abs(v)) for r, v in zip(residual_tensor, value_tensor[order])],
        num_matvecs=used,
        method="power",
        verified=False,
    )
