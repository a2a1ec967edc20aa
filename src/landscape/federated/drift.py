"""Client drift: how far and in which direction each client's local update moves from the global model.

With client updates :math:`\\Delta_k = w_k - w` and weights :math:`p_k = n_k / \\sum_j n_j`, the server's
mean update is :math:`\\bar\\Delta = \\sum_k p_k \\Delta_k` (McMahan et al. 2017). Everything here is a
function of the Gram matrix :math:`G_{kj} = \\langle \\Delta_k, \\Delta_j \\rangle` (float64), so the
updates are read once and no mean vector is formed:

.. math::

    \\langle \\Delta_k, \\bar\\Delta\\rangle = (Gp)_k, \\qquad \\lVert\\bar\\Delta\\rVert^2 = p^\\top G p, \\qquad
    \\lVert \\Delta_k - \\bar\\Delta \\rVert^2 = G_{kk} - 2 (Gp)_k + p^\\top G p.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedtrain.errors import ConfigError

__all__ = ["Drift", "gram_matrix", "client_drift"]

_CHUNK = 1 << 16  # columns per float64 block: bounds the extra memory to clients x 64k x 8 bytes


def gram_matrix(updates: Sequence[Mapping[str, Tensor]]) -> Tensor:
    """:math:`G_{kj} = \\langle \\Delta_k, \\Delta_j \\rangle` over every entry of the updates, accumulated in float64.

    Args:
        updates: one ``{parameter name: tensor}`` dict per client, same names and shapes.

    Returns:
        ``(K, K)`` float64 CPU tensor.

    Raises:
        ConfigError: no update, or updates with different parameter names.
    """
    if not updates:
        raise ConfigError("client drift needs at least one client update.")
    names = list(updates[0])
    if any(list(u) != names for u in updates):
        raise ConfigError("client updates hold different parameters; they must come from one architecture.")
    gram = torch.zeros(len(updates), len(updates), dtype=torch.float64)
    for name in names:
        rows = torch.stack([u[name].detach().reshape(-1) for u in updates])
        for start in range(0, rows.shape[1], _CHUNK):
            block = rows[:, start : start + _CHUNK].to(torch.float64)
            gram += (block @ block.T).cpu()
    return gram


@dataclass(frozen=True)
class Drift:
    """The drift of ``K`` client updates from one global model.

    Attributes:
        num_examples: :math:`n_k`, each client's weight in the mean.
        update_norms: :math:`\\lVert\\Delta_k\\rVert`.
        cosines: :math:`\\cos(\\Delta_k, \\bar\\Delta)` (NaN where a norm is zero).
        distances: :math:`\\lVert\\Delta_k - \\bar\\Delta\\rVert`.
        mean_update_norm: :math:`\\lVert\\bar\\Delta\\rVert`.
        agreement: :math:`\\lVert\\bar\\Delta\\rVert / \\sum_k p_k \\lVert\\Delta_k\\rVert \\in [0, 1]`: 1 when
            every client moves in the same direction, near 0 when the updates cancel.
        variance: :math:`\\sum_k p_k \\lVert\\Delta_k - \\bar\\Delta\\rVert^2`, the weighted spread of the updates.
        pairwise_cosines: :math:`\\cos(\\Delta_k, \\Delta_j)`, ``K x K``.
    """

    num_examples: list[int]
    update_norms: list[float]
    cosines: list[float]
    distances: list[float]
    mean_update_norm: float
    agreement: float
    variance: float
    pairwise_cosines: list[list[float]]

    def most_divergent_pair(self) -> tuple[int, int]:
        """Positions ``(i, j)``, ``i < j``, of the two updates with the smallest cosine (ties: the first pair)."""
        size = len(self.update_norms)
        if size < 2:
            raise ConfigError("The most divergent pair of clients needs at least two clients.")
        pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
        return min(pairs, key=lambda p: _nan_last(self.pairwise_cosines[p[0]][p[1]]))

    def to_dict(self) -> dict[str, Any]:
        return {"num_examples": self.num_examples, "update_norms": self.update_norms, "cosines": self.cosines,
                "distances": self.distances, "mean_update_norm": self.mean_update_norm, "agreement": self.agreement,
                "variance": self.variance, "pairwise_cosines": self.pairwise_cosines}


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def client_drift(updates: Sequence[Mapping[str, Tensor]], num_examples: Sequence[int]) -> Drift:
    """Norms, cosines with the mean update, distances to it, agreement and spread of client updates.

    Args:
        updates: :math:`\\Delta_k = w_k - w` per client, as ``{parameter name: tensor}`` dicts.
        num_examples: :math:`n_k` per client (the server's weights).

    Returns:
        The :class:`Drift` (see the module docstring for the formulas).

    Raises:
        ConfigError: no update, a count per update missing, or no sample in total.
    """
    if not updates:
        raise ConfigError("client drift needs at least one client update.")
    if len(num_examples) != len(updates) or sum(num_examples) <= 0:
        raise ConfigError(f"client drift needs one positive sample count per update; got {len(num_examples)} counts "
                          f"(total {sum(num_examples)}) for {len(updates)} updates.")
    gram = gram_matrix(updates)
    weights = torch.tensor([float(n) for n in num_examples], dtype=torch.float64)
    weights = weights / weights.sum()
    with_mean = gram @ weights
    mean_sq = float(weights @ with_mean)
    diagonal = gram.diagonal().clamp_min(0)
    norms = diagonal.sqrt()
    mean_norm = math.sqrt(max(mean_sq, 0.0))
    distances = (diagonal - 2 * with_mean + mean_sq).clamp_min(0).sqrt()
    outer = norms[:, None] * norms[None, :]
    pairwise = torch.where(outer > 0, gram / outer.clamp_min(1e-300), torch.full_like(gram, math.nan))
    return Drift(
        num_examples=[int(n) for n in num_examples],
        update_norms=norms.tolist(),
        cosines=[_ratio(float(c), float(n) * mean_norm) for c, n in zip(with_mean, norms)],
        distances=distances.tolist(),
        mean_update_norm=mean_norm,
        agreement=_ratio(mean_norm, float(weights @ norms)),
        variance=float(weights @ distances.square()),
        pairwise_cosines=pairwise.tolist(),
    )
