"""The shared Lanczos recurrence: one run's orthonormal basis, its tridiagonal ``T`` and Ritz pairs.

Both users of Lanczos build on it and nothing else runs the recurrence: the eigensolver
(:func:`landscape.hessian.lanczos.top_eigenpairs`, with locking and restarts) and stochastic Lanczos
quadrature (:func:`landscape.hessian.density.density_slq`). The basis is orthogonalised twice against
itself and the locked vectors (full reorthogonalisation) and restarted at random on breakdown.

**Where and in what precision.** The basis ``Q``, the products ``W = H Q`` and every reduction
(dot products, norms, projections) are float64 on the operator's device; ``T`` (a few dozen numbers,
built from the Python floats ``alpha_j``, ``beta_j``) and its eigendecomposition stay on the host.
One step reads two numbers back (``alpha_j`` and ``beta_j``, in one transfer): the recurrence needs
them to decide whether to go on. Random restarts are drawn on the CPU generator and moved, so a GPU
run uses the same random vectors as a CPU run. Memory: ``2 * capacity * dim`` float64 numbers,
460 MB for the paper CNN at the eigensolver's default capacity of 50.

Why float64 rather than a float32 basis with float64 reductions (the other choice for a GPU, half
the memory traffic): measured on the paper CNN (573,578 parameters, float32 products, top-5 against
a float64 reference at tol 1e-9; ``bench/results/hessian-precision.txt``), both give the same
eigenvalues: max relative error 5.9e-7 vs 5.7e-7 at 256 samples and 1.02e-5 for both at 2,048
(at tol 1e-3; tol 1e-5 does not improve either: the float32 products set that floor, not the
basis), with the same number of products; only the orthogonality of the eigenvectors differs
(``max |V^T V - I|`` 1e-13 vs 4e-8). The float64 basis work is also the cheaper on the CPU
(62 vs 100 ms a step at 50 columns, float64 reductions of a float32 basis need upcasting), small
next to a product, and it keeps CPU results bit-identical to the CPU-only engine. On a GPU a step's
basis work is memory-bound, ~0.5 GB read at 50 columns (not measured here).
"""

from __future__ import annotations

import torch
from torch import Tensor

from landscape.hessian.operator import LinearOperator

# Relative size of a new Lanczos vector below which the Krylov space is taken as invariant.
_BREAKDOWN = 1e-10


def orthogonalize(vector: Tensor, *bases: Tensor) -> Tensor:
    """Remove from ``vector`` its components in the column spaces of ``bases`` (orthonormal), twice.

    Classical Gram-Schmidt applied twice ("twice is enough", Giraud et al. 2005) keeps the basis
    orthogonal to working precision, which is what prevents ghost copies of converged eigenvalues.
    """
    for _ in range(2):
        for basis in bases:
            if basis.shape[1]:
                vector = vector - basis @ (basis.T @ vector)
    return vector


def random_unit_vector(dim: int, generator: torch.Generator, *bases: Tensor, device: torch.device | None = None) -> Tensor:
    """A Gaussian vector made orthogonal to ``bases`` and normalised: float64 on ``device`` (default the CPU).

    The draw is made on ``generator`` (a CPU generator) and then moved, so every device sees the same vector.
    """
    drawn = torch.randn(dim, generator=generator, dtype=torch.float64).to(device)
    vector = orthogonalize(drawn, *bases)
    return vector / vector.norm()


class LanczosBasis:
    """The state of one Lanczos run: basis ``Q``, optionally the products ``W = H Q``, and ``T``'s entries.

    Lanczos vectors are kept orthogonal to the columns of ``locked`` (deflation of converged
    eigenvectors) and to each other. When the recurrence breaks down (an invariant subspace), a new
    random orthogonal direction is started and the coupling ``beta`` is zero, so ``T`` stays exact.
    """

    def __init__(
        self,
        operator: LinearOperator,
        start: Tensor,
        capacity: int,
        generator: torch.Generator,
        *,
        locked: Tensor | None = None,
        store_products: bool = True,
    ) -> None:
        dim = operator.dim
        self.operator = operator
        self.device = operator.device
        self.generator = generator
        self.locked = locked if locked is not None else torch.zeros(dim, 0, dtype=torch.float64, device=self.device)
        self.capacity = capacity
        self.q = torch.zeros(dim, capacity, dtype=torch.float64, device=self.device)
        self.w = torch.zeros(dim, capacity, dtype=torch.float64, device=self.device) if store_products else None
        self.alphas: list[float] = []
        self.betas: list[float] = []  # betas[j] couples q_j and q_{j+1}
        start = orthogonalize(start.to(device=self.device, dtype=torch.float64), self.locked)
        self.q[:, 0] = start / start.norm()
        self.size = 0  # number of columns whose product has been taken
        self.num_matvecs = 0

    @property
    def full(self) -> bool:
        return self.size >= self.capacity

    def step(self) -> None:
        """One Lanczos step: one product ``H q_j``, ``alpha_j``, and the next orthonormal vector."""
        j = self.size
        q = self.q[:, j]
        product = self.operator.matvec(q)
        self.num_matvecs += 1
        if self.w is not None:
            self.w[:, j] = product
        # the residual norm is needed even when full: the Lanczos error bound of the last step
        residual = orthogonalize(product, self.locked, self.q[:, : j + 1])
        alpha, beta = torch.stack([q @ product, residual.norm()]).tolist()  # one read from the device per step
        self.alphas.append(alpha)
        self.size += 1
        if self.full:
            self.betas.append(beta)
            return
        scale = max(abs(a) for a in self.alphas) or 1.0
        if beta <= _BREAKDOWN * scale:
            beta = 0.0
            room = self.operator.dim - self.locked.shape[1] - self.size
            if room <= 0:
                self.betas.append(0.0)
                self.capacity = self.size
                return
            residual = random_unit_vector(self.operator.dim, self.generator, self.locked, self.q[:, : self.size], device=self.device)
        else:
            residual = residual / beta
        self.betas.append(beta)
        self.q[:, j + 1] = residual

    def tridiagonal(self) -> Tensor:
        """The ``size x size`` symmetric tridiagonal matrix ``T = Q^T H Q`` (float64)."""
        m = self.size
        t = torch.diag(torch.tensor(self.alphas, dtype=torch.float64))
        if m > 1:
            off = torch.tensor(self.betas[: m - 1], dtype=torch.float64)
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        return t

    def ritz(self) -> tuple[Tensor, Tensor, Tensor]:
        """Ritz values (descending), the eigenvectors ``S`` of ``T``, and Lanczos residual bounds ``|beta_m s_m|``."""
        values, vectors = torch.linalg.eigh(self.tridiagonal())
        values, vectors = values.flip(0), vectors.flip(1)
        last_beta = self.betas[self.size - 1] if len(self.betas) >= self.size else 0.0
        bounds = abs(last_beta) * vectors[-1, :].abs()
        return values, vectors, bounds

    def ritz_vectors(self, coefficients: Tensor) -> Tensor:
        """``Q S`` for coefficient columns ``S`` (on the host or the device), on the device."""
        return self.q[:, : self.size] @ coefficients.to(self.device)

    def true_residuals(self, values: Tensor, coefficients: Tensor) -> Tensor:
        """``||H y - theta y||`` for Ritz pairs, from the stored products ``W = H Q`` (no new product), on the host."""
        if self.w is None:
            raise RuntimeError("true_residuals needs store_products=True.")
        vectors = self.ritz_vectors(coefficients)
        products = self.w[:, : self.size] @ coefficients.to(self.device)
        return (products - vectors * values.to(self.device)).norm(dim=0).cpu()
