"""Top-k eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation, locking and verification.

The solver (Golub & Van Loan, *Matrix Computations*, 4th ed., §10.1-10.3; Saad, *Numerical Methods
for Large Eigenvalue Problems*, §6.4 and §4.2 for deflation):

1. Extend a Krylov basis ``Q`` (orthogonalised twice against itself and the locked vectors) until
   the Lanczos bounds ``|beta_m s_{m,i}|`` of the wanted Ritz pairs fall below ``tol * |theta_i|``.
2. Check the *true* residuals ``||H y_i - theta_i y_i||`` from the stored products ``W = H Q``
   (``H y = W s``: no extra product) and lock the converged pairs.
3. Unconverged pairs: restart from the sum of their Ritz vectors (explicit restart, the basis
   capped at ``max_basis``) on the operator deflated by the locked vectors.
4. A single Krylov space holds one vector of a repeated eigenvalue's eigenspace, so after k pairs
   are locked, a fresh random start on the deflated operator checks that no eigenvalue above the
   k-th was missed; copies found that way are locked and the check repeats. Locked vectors are
   orthonormal by construction, so ghost copies cannot appear.

Vectors live on the operator's device (float64, :mod:`landscape.hessian.krylov`); Ritz values,
residuals and the convergence decisions on the host. "Top" means largest algebraic value (the
sharpness direction), not largest magnitude. The module also
owns the :class:`Eigenpairs` record (the power-iteration reference returns one too) and
:func:`flatness_ratio`, the ``lambda_1 / lambda_k`` of every eigenpair set and report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fedtrain.errors import ConfigError
from landscape.hessian.krylov import LanczosBasis, random_unit_vector
from landscape.hessian.operator import LinearOperator, as_operator

__all__ = ["Eigenpairs", "top_eigenpairs", "default_max_matvecs", "flatness_ratio"]

# Absolute floor of the convergence threshold, relative to the largest Ritz value seen, so that
# exactly-zero eigenvalues can converge.
_FLOOR = 1e-8
# Relative residual at which a verification candidate is trusted to lie below lambda_k.
_VERIFY_TOL = 1e-1


@dataclass(frozen=True)
class Eigenpairs:
    """Eigenpairs of a symmetric operator, eigenvalues in descending order.

    Attributes:
        values: ``(k,)`` float64 eigenvalue estimates, descending (on the CPU).
        vectors: ``(dim, k)`` float64 orthonormal eigenvector estimates, on the operator's device.
        residuals: ``(k,)`` true residual norms ``||H v_i - lambda_i v_i||`` (on the CPU).
        converged: per pair, whether ``residual <= tol * |lambda|``.
        num_matvecs: operator products used.
        method: ``"lanczos"`` or ``"power"``.
        verified: whether the final multiplicity check (no eigenvalue missed above ``lambda_k``) ran to completion.
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    converged: list[bool]
    num_matvecs: int
    method: str
    verified: bool = True

    @property
    def ratio(self) -> float | None:
        """:func:`flatness_ratio` of the eigenvalues."""
        return flatness_ratio(self.values.tolist())


def flatness_ratio(eigenvalues: Sequence[float]) -> float | None:
    """``lambda_1 / lambda_k`` of eigenvalues in descending order (the paper's flatness ratio for k = 5).

    ``None`` when there is no eigenvalue or ``lambda_k = 0``.
    """
    if not eigenvalues or eigenvalues[-1] == 0:
        return None
    return eigenvalues[0] / eigenvalues[-1]


def default_max_matvecs(k: int) -> int:
    """Default product budget for ``k`` eigenpairs: ``max(200, 40 k)``."""
    return max(200, 40 * k)


def top_eigenpairs(
    operator: LinearOperator | Tensor,
    k: int,
    *,
    tol: float = 1e-3,
    max_matvecs: int | None = None,
    generator: torch.Generator | None = None,
    max_basis: int | None = None,
    v0: Tensor | None = None,
    verify: bool = True,
) -> Eigenpairs:
    """The ``k`` algebraically largest eigenpairs, each with true residual ``<= tol * |lambda|``.

    Args:
        operator: a :class:`~landscape.hessian.operator.LinearOperator` or a dense symmetric ``Tensor``.
        k: number of eigenpairs.
        tol: relative residual tolerance. The eigenvalue error is at most ``tol |lambda|`` and
            typically ``~ (tol |lambda|)^2 / gap`` (Parlett, *The Symmetric Eigenvalue Problem*, Thm 11.7.1).
        max_matvecs: budget of products (default :func:`default_max_matvecs`); pairs not converged
            within it are returned with ``converged=False``.
        generator: source of the random start vectors (default: seed 0).
        max_basis: largest Krylov basis before an explicit restart (default ``max(2k + 30, 50)``);
            memory is ``2 * max_basis * dim`` float64 numbers.
        v0: start vector of the first Krylov space (any non-zero ``(dim,)`` vector; default a random one
            from ``generator``). A warm start from a previous top eigenvector (e.g. of the model a few
            training rounds earlier) converges in fewer products when the new eigenvector is close to it.
        verify: run step 4, the check from a fresh random start that no eigenvalue above the k-th was
            missed (a few more products); without it ``verified`` is ``False``. Sharpness tracking skips it
            to keep a check to a few products: it follows lambda_max from check to check.

    Returns:
        :class:`Eigenpairs` with ``k`` pairs.

    Raises:
        ConfigError: ``k`` outside ``[1, dim]``, ``tol <= 0``, a budget smaller than ``k``, or a ``v0`` that is
            not a finite non-zero vector of length ``dim``.
    """
    op = as_operator(operator)
    n = op.dim
    if not 1 <= k <= n:
        raise ConfigError(f"k must be between 1 and the operator dimension {n}, got {k}.")
    if tol <= 0:
        raise ConfigError(f"tol must be > 0, got {tol}.")
    budget = default_max_matvecs(k) if max_matvecs is None else int(max_matvecs)
    if budget < k:
        raise ConfigError(f"max_matvecs must be at least k={k}, got {budget}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    max_basis = max(2 * k + 30, 50) if max_basis is None else max(int(max_basis), k + 1)

    device = op.device
    locked_vecs = torch.zeros(n, 0, dtype=torch.float64, device=device)
    locked_vals: list[float] = []
    locked_res: list[float] = []
    pending: tuple[Tensor, Tensor, Tensor] | None = None  # unconverged candidates from the last run
    used = 0
    verifying = False
    verified = False
    start = random_unit_vector(n, generator, device=device) if v0 is None else _start_vector(v0, n, device)
    scale = 0.0

    while True:
        free = n - locked_vecs.shape[1]
        capacity = min(max_basis, free, budget - used)
        if free == 0:
            verified = True
            break
        if capacity <= 0:
            break
        if verifying and not verify:
            break
        want = min(k - len(locked_vals), free) if not verifying else 1
        kth = sorted(locked_vals, reverse=True)[k - 1] if verifying else 0.0
        basis = LanczosBasis(op, start, capacity, generator, locked=locked_vecs)
        while True:
            basis.step()
            values, coefficients, bounds = basis.ritz()
            scale = max(scale, float(values.abs().max()))
            thresholds = tol * values.abs().clamp_min(_FLOOR * scale)
            if not verifying:
                done = basis.size >= want and bool((bounds[:want] <= thresholds[:want]).all())
            else:
                # stop once the candidate is either converged, or loosely converged and clearly below lambda_k
                loose = max(tol, _VERIFY_TOL) * abs(float(values[0]))
                below = float(values[0] + bounds[0]) < kth - tol * abs(kth)
                done = bool(bounds[0] <= thresholds[0]) or (below and float(bounds[0]) <= loose)
            if done or basis.full:
                break
        used += basis.num_matvecs
        top = min(want, basis.size)
        values, coefficients = values[:top], coefficients[:, :top]
        residuals = basis.true_residuals(values, coefficients)
        ok = residuals <= thresholds[:top]
        vectors = basis.ritz_vectors(coefficients)

        if verifying:
            value = float(values[0])
            if bool(ok[0]) and value > kth - tol * abs(kth):
                locked_vecs, pending = _lock(locked_vecs, locked_vals, locked_res, vectors, values, residuals, ok), None
                start = random_unit_vector(n, generator, locked_vecs, device=device)
            elif bool(ok[0]) or (
                value + float(residuals[0]) < kth - tol * abs(kth)
                and float(residuals[0]) <= max(tol, _VERIFY_TOL) * abs(value)
            ):
                verified = True
                break
            else:  # undecided: keep improving the candidate
                start = vectors[:, 0]
            continue

        locked_vecs = _lock(locked_vecs, locked_vals, locked_res, vectors, values, residuals, ok)
        if bool(ok.all()):
            pending = None
            verifying = len(locked_vals) >= k
            start = random_unit_vector(n, generator, locked_vecs, device=device)
        else:
            unconverged = vectors[:, (~ok).to(device)]
            pending = (values[~ok], unconverged, residuals[~ok])
            start = unconverged.sum(dim=1)

    return _assemble(k, tol, locked_vals, locked_vecs, locked_res, pending, used, verified)


def _start_vector(v0: Tensor, dim: int, device: torch.device) -> Tensor:
    """``v0`` as a unit float64 vector on ``device``, or a ConfigError saying why it cannot start a Krylov space."""
    if v0.shape != (dim,):
        raise ConfigError(f"v0 must be a vector of shape ({dim},) (the operator dimension), got {tuple(v0.shape)}.")
    start = v0.detach().to(device=device, dtype=torch.float64)
    norm = float(start.norm())
    if not math.isfinite(norm) or norm == 0.0:
        raise ConfigError(f"v0 must be a finite non-zero vector (its norm is {norm}); pass v0=None for a random start.")
    return start / norm


def _lock(
    locked_vecs: Tensor,
    locked_vals: list[float],
    locked_res: list[float],
    vectors: Tensor,
    values: Tensor,
    residuals: Tensor,
    ok: Tensor,
) -> Tensor:
    """Append the converged pairs to the locked set; returns the new locked basis."""
    locked_vals.extend(float(v) for v in values[ok])
    locked_res.extend(float(r) for r in residuals[ok])
    return torch.cat([locked_vecs, vectors[:, ok.to(vectors.device)]], dim=1)


def _assemble(
    k: int,
    tol: float,
    locked_vals: list[float],
    locked_vecs: Tensor,
    locked_res: list[float],
    pending: tuple[Tensor, Tensor, Tensor] | None,
    used: int,
    verified: bool,
) -> Eigenpairs:
    values = torch.tensor(locked_vals, dtype=torch.float64)
    vectors, residuals = locked_vecs, torch.tensor(locked_res, dtype=torch.float64)
    converged = [True] * len(locked_vals)
    if pending is not None:
        values = torch.cat([values, pending[0]])
        vectors = torch.cat([vectors, pending[1]], dim=1)
        residuals = torch.cat([residuals, pending[2]])
        converged += [False] * len(pending[0])
    order = torch.argsort(values, descending=True)[:k]
    return Eigenpairs(
        values=values[order],
        vectors=vectors[:, order.to(vectors.device)],
        residuals=residuals[order],
        converged=[converged[i] for i in order.tolist()],
        num_matvecs=used,
        method="lanczos",
        verified=verified and all(converged[i] for i in order.tolist()),
    )
