"""Curvature of one client's loss, and the local-global gap: top eigenvalues and trace on a client's samples.

A client's loss is the mean cross-entropy on its samples, :math:`L_k(w) = \\frac{1}{n_k}\\sum_{i \\in D_k}\\ell_i(w)`,
and the pooled (global) loss on the union of the clients' samples is
:math:`L(w) = \\sum_k \\frac{n_k}{N} L_k(w)`; hence, exactly, :math:`H = \\sum_k \\frac{n_k}{N} H_k`.
Every number here comes from :func:`landscape.hessian.analysis.analyze_model` (Lanczos and Hutch++).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from landscape.federated.settings import ClientSettings
from landscape.hessian.analysis import analyze_model
from landscape.settings import HessianSettings

__all__ = ["Curvature", "hessian_settings", "curvature", "local_global_gap"]


@dataclass(frozen=True)
class Curvature:
    """Top eigenvalues and trace of one Hessian, with what they cost.

    Attributes:
        eigenvalues: top-k eigenvalues, descending.
        converged: per eigenpair, whether its residual met the tolerance.
        trace: Hutch++ estimate of the trace (``None`` when not asked).
        trace_stderr: its standard error.
        num_examples: samples the loss is the mean over.
        hvps: Hessian-vector products used (each one pass over the samples).
        seconds: wall time.
    """

    eigenvalues: list[float]
    converged: list[bool | None]
    trace: float | None
    trace_stderr: float | None
    num_examples: int
    hvps: int
    seconds: float

    @property
    def lambda_max(self) -> float:
        """The largest eigenvalue."""
        return self.eigenvalues[0]

    def to_dict(self) -> dict[str, Any]:
        return {"eigenvalues": self.eigenvalues, "converged": self.converged, "trace": self.trace,
                "trace_stderr": self.trace_stderr, "num_examples": self.num_examples, "hvps": self.hvps,
                "seconds": self.seconds}


def hessian_settings(settings: ClientSettings) -> HessianSettings:
    """The Hessian analysis every client (and the pooled set) gets: top-k, Hutch++ trace, no density."""
    return HessianSettings(
        num_examples=None, batch_size=settings.batch_size, top_k=settings.top_k, tol=settings.tol,
        max_matvecs=settings.max_matvecs, trace=settings.trace, trace_method="hutch++",
        trace_matvecs=settings.trace_matvecs, density=False, seed=settings.seed, device=settings.device,
    )


def curvature(model: nn.Module, inputs: Tensor, labels: Tensor, settings: HessianSettings) -> Curvature:
    """Top eigenvalues and trace of the Hessian of the mean cross-entropy of ``model`` on ``(inputs, labels)``.

    Args:
        model: the network (not modified).
        inputs: normalised inputs (a client's samples, or the union of several clients').
        labels: their labels.
        settings: the analysis (:func:`hessian_settings`).

    Returns:
        The :class:`Curvature`.

    Raises:
        ConfigError: a device this machine does not have, or non-finite weights.
    """
    report = analyze_model(model, inputs, labels, settings)
    trace = report.trace or {}
    return Curvature(
        eigenvalues=report.eigenvalues, converged=report.converged, trace=trace.get("estimate"),
        trace_stderr=trace.get("stderr"), num_examples=int(labels.numel()), hvps=int(report.hvps["total"]),
        seconds=float(report.seconds["total"]),
    )


def local_global_gap(local: Sequence[float], num_examples: Sequence[int], pooled: float) -> dict[str, float]:
    """How much sharper the clients' own losses are than the pooled loss, at one model.

    By the convexity of :math:`\\lambda_{\\max}` (Weyl's inequality) and :math:`H = \\sum_k \\frac{n_k}{N} H_k`,

    .. math:: \\lambda_{\\max}(H) \\le \\sum_k \\frac{n_k}{N} \\lambda_{\\max}(H_k),

    so ``gap = weighted_mean_local - pooled >= 0`` up to the eigensolver's tolerance; it is zero only when
    the clients' top eigenvectors coincide. ``ratio`` is ``weighted_mean_local / pooled``.

    Args:
        local: each client's :math:`\\lambda_{\\max}(H_k)`.
        num_examples: each client's number of samples in its Hessian (:math:`n_k`).
        pooled: :math:`\\lambda_{\\max}(H)` on the union of the same samples.

    Returns:
        ``{"mean_local", "weighted_mean_local", "pooled", "gap", "ratio"}``.
    """
    total = sum(num_examples)
    weighted = sum(n * value for n, value in zip(num_examples, local)) / total
    return {"mean_local": sum(local) / len(local), "weighted_mean_local": weighted, "pooled": pooled,
            "gap": weighted - pooled, "ratio": weighted / pooled if pooled != 0 else float("nan")}
