"""Eigenvalue density by stochastic Lanczos quadrature (SLQ), with raw nodes/weights and a smoothed density.

For a probe ``v`` with ``||v|| = 1``, ``m`` Lanczos steps give ``T = S diag(theta) S^T`` and the
Gauss quadrature ``v^T f(H) v ~= sum_i tau_i f(theta_i)`` with ``tau_i = S_{1i}^2``, exact for
polynomials of degree ``< 2m`` (Golub & Meurant 2010). Averaging over random probes estimates
``tr f(H) / n``: the spectral density is the mixture of point masses ``(theta_i, tau_i / P)``
(Lin, Saad & Yang 2016; Ghorbani, Krishnan & Xiao 2019). The module owns the Gaussian smoothing and
its kernel width (:func:`default_bandwidth`) for every density, the PyHessian backend's included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedtrain.errors import ConfigError
from landscape.hessian.krylov import LanczosBasis
from landscape.hessian.operator import LinearOperator, as_operator
from landscape.hessian.trace import random_probes

__all__ = ["SpectralDensity", "density_slq", "smooth_density", "default_bandwidth"]


@dataclass(frozen=True)
class SpectralDensity:
    """An SLQ spectral density.

    Attributes:
        nodes: ``(num_probes, num_steps)`` Ritz values per probe.
        weights: ``(num_probes, num_steps)`` quadrature weights per probe (each row sums to 1).
        grid: ``(grid_size,)`` points where the smoothed density is evaluated.
        values: ``(grid_size,)`` Gaussian-smoothed density on ``grid``; integrates to 1.
        bandwidth: standard deviation of the Gaussian kernel.
        num_matvecs: operator products used.
    """

    nodes: Tensor
    weights: Tensor
    grid: Tensor
    values: Tensor
    bandwidth: float
    num_matvecs: int

    def moment(self, power: int) -> float:
        """Estimate of ``tr(H^p) / n``: ``sum_i tau_i theta_i^p`` averaged over probes (exact per probe for p < 2m)."""
        return float((self.weights * self.nodes**power).sum() / self.nodes.shape[0])

    def to_dict(self) -> dict[str, object]:
        return {
            "nodes": self.nodes,
            "weights": self.weights,
            "grid": self.grid,
            "values": self.values,
            "bandwidth": self.bandwidth,
            "num_matvecs": self.num_matvecs,
        }


def default_bandwidth(nodes: Tensor) -> float:
    """The kernel width of every smoothed density: ``(max - min) / 200`` of the nodes.

    A spread of zero (all nodes equal) falls back to ``1e-3 max(|node|, 1)``. PyHessian uses
    ``sqrt(1e-5 max(1, range))`` instead, which blurs the outliers of a wide spectrum.
    """
    spread = float(nodes.max() - nodes.min())
    return spread / 200 if spread > 0 else max(abs(float(nodes.max())), 1.0) * 1e-3


def smooth_density(nodes: Tensor, weights: Tensor, *, bandwidth: float, grid_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Gaussian-kernel density of the point masses ``(nodes, weights / num_probes)``, vectorised.

    .. math:: \\phi(t) = \\frac1P \\sum_{p,i} \\tau_{p,i}\\, \\mathcal N(t;\\, \\theta_{p,i}, \\sigma^2)

    The grid spans ``[min - 5 sigma, max + 5 sigma]``, so the kernels' mass lies inside it; the
    values are divided by their trapezoid integral, so they integrate to exactly 1 on the grid.

    Returns:
        ``(grid, values)``.

    Raises:
        ConfigError: a non-positive bandwidth or grid size below 2.
    """
    if bandwidth <= 0 or grid_size < 2:
        raise ConfigError(f"bandwidth must be > 0 and grid_size >= 2, got {bandwidth} and {grid_size}.")
    flat_nodes = nodes.reshape(-1).to(torch.float64)
    flat_weights = weights.reshape(-1).to(torch.float64) / nodes.shape[0]
    grid = torch.linspace(float(flat_nodes.min()) - 5 * bandwidth, float(flat_nodes.max()) + 5 * bandwidth, grid_size, dtype=torch.float64)
    values = torch.zeros(grid_size, dtype=torch.float64)
    for start in range(0, flat_nodes.numel(), 256):  # chunks bound memory at grid_size x 256
        z = (grid[:, None] - flat_nodes[None, start : start + 256]) / bandwidth
        values += (torch.exp(-0.5 * z**2) * flat_weights[None, start : start + 256]).sum(dim=1)
    values /= bandwidth * (2 * torch.pi) ** 0.5
    values /= torch.trapezoid(values, grid)
    return grid, values


def density_slq(
    operator: LinearOperator | Tensor,
    *,
    num_probes: int = 10,
    num_steps: int = 80,
    generator: torch.Generator,
    bandwidth: float | None = None,
    grid_size: int = 1000,
) -> SpectralDensity:
    """Spectral density by SLQ with Rademacher probes and fully reorthogonalised Lanczos.

    Args:
        operator: a :class:`~landscape.hessian.operator.LinearOperator` or a dense symmetric ``Tensor``.
        num_probes: number of Rademacher probes (>= 1; 10 by default, PyHessian uses 1).
        num_steps: Lanczos steps per probe (capped at the dimension).
        generator: source of the probes.
        bandwidth: Gaussian kernel standard deviation; default :func:`default_bandwidth`.
        grid_size: number of grid points of the smoothed density.

    Returns:
        :class:`SpectralDensity`; products used: ``num_probes * min(num_steps, dim)``.

    Raises:
        ConfigError: ``num_probes`` or ``num_steps`` below 1.
    """
    if num_probes < 1 or num_steps < 1:
        raise ConfigError(f"num_probes and num_steps must be >= 1, got {num_probes} and {num_steps}.")
    op = as_operator(operator)
    steps = min(num_steps, op.dim)
    all_nodes, all_weights, used = [], [], 0
    for _ in range(num_probes):
        probe = random_probes(op.dim, 1, generator, "rademacher", device=op.device)[:, 0]
        basis = LanczosBasis(op, probe, steps, generator, store_products=False)
        while not basis.full:
            basis.step()
        used += basis.num_matvecs
        theta, vectors = torch.linalg.eigh(basis.tridiagonal())
        nodes = torch.zeros(steps, dtype=torch.float64)
        weights = torch.zeros(steps, dtype=torch.float64)  # unused slots (early breakdown) carry no weight
        nodes[: basis.size], weights[: basis.size] = theta, vectors[0, :] ** 2
        if basis.size < steps:
            nodes[basis.size :] = theta[-1]
        all_nodes.append(nodes)
        all_weights.append(weights)
    nodes, weights = torch.stack(all_nodes), torch.stack(all_weights)
    if bandwidth is None:
        bandwidth = default_bandwidth(nodes)
    grid, values = smooth_density(nodes, weights, bandwidth=bandwidth, grid_size=grid_size)
    return SpectralDensity(nodes=nodes, weights=weights, grid=grid, values=values, bandwidth=float(bandwidth), num_matvecs=used)
