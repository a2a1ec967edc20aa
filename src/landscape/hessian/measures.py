"""Flatness measures beyond the top eigenvalue: worst-case, adaptive and average-case sharpness, GGN and Fisher, side by side.

All of them are taken on one fixed set of batches (the Hessian operator's), each from its own seeded
generator, with a standard error where they are Monte-Carlo estimates:

* ``lambda-max``: the top Hessian eigenvalue (Lanczos), and ``lambda_max * ||w||^2``;
* ``trace``: ``tr(H)`` (Hutch++, with its standard error), and ``tr(H) * ||w||^2``;
* ``worst``: :func:`worst_case_sharpness`, ``max_{||delta|| <= rho} L(w + delta) - L(w)``;
* ``adaptive-worst``: the same over ``||T_w^{-1} delta|| <= rho``, ``T_w = |w| + eta`` (ASAM's operator);
* ``average``: :func:`average_case_sharpness`, ``E_{delta ~ N(0, sigma^2 I)} L(w + delta) - L(w)``;
* ``ggn`` / ``fisher``: the top eigenvalue of the generalised Gauss-Newton / empirical Fisher
  (:mod:`landscape.hessian.ggn`).

**Which are scale-invariant.** A ReLU network computes the same function when one layer's weights are
multiplied by ``c > 0`` and the next layer's divided by ``c`` (Dinh et al., ICML 2017, "Sharp minima can
generalize for deep nets"). Only ``adaptive-worst`` with ``eta = 0`` is invariant to that rescaling (and
to any elementwise one that leaves the function unchanged): with ``delta = T_w u`` the perturbed
weights are ``w (1 + sign(w) u)`` whatever the scale (Kwon et al., ICML 2021; Andriushchenko et al.,
ICML 2023, "A modern look at the relationship between sharpness and generalization"). lambda_max,
the trace, the GGN and Fisher eigenvalues, worst- and average-case sharpness all change with it.
Normalising by the squared weight norm (``lambda_max ||w||^2``, ``tr(H) ||w||^2``) removes a change of
units of all parameters together (``L(w) = g(w / s)`` gives ``H`` times ``1 / s^2`` and ``||w||^2``
times ``s^2``), not the layer-wise rescaling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.func import functional_call, grad_and_value

from fedtrain.device import synchronize
from fedtrain.errors import ConfigError
from fedtrain.sam import weight_mask
from landscape.hessian.ggn import GaussNewtonOperator
from landscape.hessian.hvp import full_precision
from landscape.hessian.lanczos import top_eigenpairs
from landscape.hessian.operator import HessianOperator
from landscape.hessian.trace import mean_and_stderr, trace_hutchpp
from landscape.settings import MeasureSettings

__all__ = [
    "Objective",
    "ModelObjective",
    "QuadraticObjective",
    "SharpnessEstimate",
    "worst_case_sharpness",
    "average_case_sharpness",
    "adaptive_scale",
    "measure_seeds",
    "flatness_measures",
    "SCALE_INVARIANT",
]

# Per reported quantity: whether it is invariant to the c, 1/c rescaling of consecutive ReLU layers.
SCALE_INVARIANT: dict[str, bool] = {
    "lambda_max": False, "lambda_max_x_weight_norm2": False, "trace": False, "trace_x_weight_norm2": False,
    "worst": False, "adaptive_worst": True, "average": False, "ggn_lambda_max": False, "fisher_lambda_max": False,
}
# Halve the ascent step after a step that did not raise the loss (as APGD does, Croce & Hein 2020).
_STEP_DECAY = 0.5


class Objective(Protocol):
    """A loss as a function of a flat float64 parameter vector of length ``dim`` held on ``device``."""

    dim: int
    device: torch.device

    def value(self, flat: Tensor) -> float: ...

    def value_and_grad(self, flat: Tensor) -> tuple[float, Tensor]: ...


class QuadraticObjective:
    """``L(w) = 1/2 (w - w*)^T A (w - w*)``: the exact case of the tests (its sharpness is known in closed form)."""

    def __init__(self, matrix: Tensor, minimum: Tensor | None = None) -> None:
        self.matrix = matrix.to(torch.float64)
        self.dim = int(matrix.shape[0])
        self.device = self.matrix.device
        self.minimum = torch.zeros(self.dim, dtype=torch.float64, device=self.device) if minimum is None else minimum.to(torch.float64)

    def value(self, flat: Tensor) -> float:
        """``L(w)``."""
        d = flat - self.minimum
        return float(0.5 * d @ (self.matrix @ d))

    def value_and_grad(self, flat: Tensor) -> tuple[float, Tensor]:
        """``L(w)`` and ``A (w - w*)``."""
        g = self.matrix @ (flat - self.minimum)
        return float(0.5 * (flat - self.minimum) @ g), g


class ModelObjective:
    """The mean loss of a :class:`~landscape.hessian.operator.HessianOperator`'s model over its batches.

    It shares the operator's private model copy, batches (on its device), count weighting and flattening:
    ``L(w) = sum_b (n_b / N) loss_b(w)``, evaluated in the parameters' dtype and summed in float64.
    """

    def __init__(self, operator: HessianOperator) -> None:
        self.operator = operator
        self.dim = operator.dim
        self.device = operator.device

    def center(self) -> Tensor:
        """The model's own parameters as a flat float64 vector."""
        return self.operator.flatten(self.operator.params)

    def _batch_loss(self, params: dict[str, Tensor], batch: tuple[Tensor, Tensor]) -> Tensor:
        inputs, targets = batch
        return self.operator.loss_fn(functional_call(self.operator.model, params, (inputs,)), targets)

    def value(self, flat: Tensor) -> float:
        """``L(w)`` at the flat parameters ``flat``: one forward pass over the batches."""
        op, params = self.operator, self.operator.unflatten(flat)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.no_grad(), full_precision(self.device):
            for batch, count in zip(op.batches, op.counts):
                total += (count / op.num_examples) * self._batch_loss(params, batch).to(torch.float64)
        return float(total)

    def value_and_grad(self, flat: Tensor) -> tuple[float, Tensor]:
        """``L(w)`` and its gradient (flat float64): one forward and backward pass over the batches."""
        op, params = self.operator, self.operator.unflatten(flat)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        gradient = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        step = grad_and_value(self._batch_loss)
        with torch.enable_grad(), full_precision(self.device):
            for batch, count in zip(op.batches, op.counts):
                g, loss = step(params, batch)
                total += (count / op.num_examples) * loss.detach().to(torch.float64)
                gradient += (count / op.num_examples) * op.flatten({k: v.detach() for k, v in g.items()})
        return float(total), gradient


@dataclass(frozen=True)
class SharpnessEstimate:
    """A sharpness value and what it cost.

    Attributes:
        value: the sharpness (a loss increase).
        stderr: its standard error (``None`` for the ascent, whose value is a lower bound of the maximum).
        num_losses: loss evaluations (one pass over the data each).
        num_gradients: gradient evaluations (one forward and backward pass each).
        method: ``"projected-ascent"`` or ``"antithetic-monte-carlo"``.
        loss: the unperturbed loss ``L(w)``.
        history: for the ascent, ``L(w + delta_t) - L(w)`` after each step.
    """

    value: float
    stderr: float | None
    num_losses: int
    num_gradients: int
    method: str
    loss: float
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "stderr": self.stderr, "num_losses": self.num_losses,
                "num_gradients": self.num_gradients, "method": self.method, "loss": self.loss}


def _unit(vector: Tensor) -> Tensor:
    norm = vector.norm()
    return vector / norm if float(norm) > 0 else vector


def worst_case_sharpness(
    objective: Objective,
    center: Tensor,
    rho: float,
    *,
    steps: int = 20,
    scale: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> SharpnessEstimate:
    """Worst-case (adaptive when ``scale`` is given) sharpness by projected normalised gradient ascent.

    .. math:: S_\\rho(w) = \\max_{\\lVert T^{-1} \\delta \\rVert_2 \\le \\rho} L(w + \\delta) - L(w)

    with ``T = diag(scale)`` (``T = I``: plain worst-case sharpness, Keskar et al. 2017; ``T = |w| + eta``:
    adaptive sharpness, Kwon et al. 2021, Andriushchenko et al. 2023). The ascent runs in ``u = T^{-1} delta``:
    it starts at SAM's / ASAM's step ``u = rho T g / ||T g||`` (a seeded random direction when the gradient
    is zero, e.g. at an exact minimum), then ``steps - 1`` times ``u <- P(u + a rho T g / ||T g||)`` with
    ``g`` the gradient at ``w + T u``, ``P`` the projection onto the ball, ``a = 2`` halved after a step that
    did not raise the loss. The value is the largest loss increase seen, a lower bound of the maximum that
    is exact for a quadratic at its minimum (``rho^2 lambda_max / 2``, the ascent being a shifted power
    iteration there).

    Args:
        objective: the loss (:class:`ModelObjective`, :class:`QuadraticObjective`).
        center: the point ``w`` (flat float64 on the objective's device).
        rho: the radius, > 0.
        steps: gradient evaluations (>= 1).
        scale: the diagonal of ``T`` (flat, positive entries where the ball extends; zero freezes a coordinate).
        generator: the random start used when the gradient at ``w`` is zero (default seed 0).

    Returns:
        :class:`SharpnessEstimate` (``stderr=None``; ``num_gradients = steps``, ``num_losses = 1``).

    Raises:
        ConfigError: ``rho <= 0`` or ``steps < 1``.
    """
    if not (rho > 0 and math.isfinite(rho)):
        raise ConfigError(f"rho must be a finite number > 0, got {rho}.")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    t = torch.ones_like(center) if scale is None else scale.to(center)
    base, g = objective.value_and_grad(center)
    direction = _unit(t * g)
    if float(direction.norm()) == 0:
        direction = _unit(t * torch.randn(center.numel(), generator=generator, dtype=torch.float64).to(center.device))
    u = rho * direction
    best, history, step_size, previous = -math.inf, [], 2.0, -math.inf
    for _ in range(steps):
        loss, g = objective.value_and_grad(center + t * u)
        gain = loss - base
        history.append(gain)
        best = max(best, gain)
        if gain <= previous:
            step_size *= _STEP_DECAY
        previous = gain
        u = u + step_size * rho * _unit(t * g)
        u = u * min(1.0, rho / max(float(u.norm()), 1e-300))
    return SharpnessEstimate(value=best, stderr=None, num_losses=0, num_gradients=steps + 1,
                             method="projected-ascent", loss=base, history=history)


def average_case_sharpness(
    objective: Objective,
    center: Tensor,
    sigma: float,
    *,
    samples: int = 32,
    generator: torch.Generator | None = None,
) -> SharpnessEstimate:
    """Average-case sharpness by antithetic Monte Carlo, with its standard error.

    .. math:: S^{\\mathrm{avg}}_\\sigma(w) = \\mathbb{E}_{\\delta \\sim N(0, \\sigma^2 I)} L(w + \\delta) - L(w)
        \\approx \\frac{1}{n} \\sum_{j=1}^n \\frac{L(w + \\delta_j) + L(w - \\delta_j)}{2} - L(w)

    The pairs ``(delta, -delta)`` cancel the gradient term exactly, so the estimate's variance comes from
    the curvature only; to second order the value is ``sigma^2 tr(H) / 2`` (Andriushchenko et al. 2023).
    Draws are made on the CPU ``generator`` and moved (the same numbers on every device).

    Args:
        objective: the loss.
        center: the point ``w``.
        sigma: the perturbation's standard deviation, > 0.
        samples: antithetic pairs (>= 2 for a standard error).
        generator: source of the draws (default seed 0).

    Returns:
        :class:`SharpnessEstimate` with the standard error over the pairs (``num_losses = 2 samples + 1``).

    Raises:
        ConfigError: ``sigma <= 0`` or ``samples < 1``.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"sigma must be a finite number > 0, got {sigma}.")
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    base = objective.value(center)
    gains = []
    for _ in range(samples):
        delta = sigma * torch.randn(center.numel(), generator=generator, dtype=torch.float64).to(center.device)
        gains.append((objective.value(center + delta) + objective.value(center - delta)) / 2 - base)
    value, stderr = mean_and_stderr(gains)
    return SharpnessEstimate(value=value, stderr=None if math.isnan(stderr) else stderr, num_losses=2 * samples + 1,
                             num_gradients=0, method="antithetic-monte-carlo", loss=base)


def adaptive_scale(operator: HessianOperator, eta: float) -> Tensor:
    """ASAM's ``T_w = |w| + eta`` on weight tensors and ``1`` elsewhere (biases), flat, as the project's FedASAM.

    The weight tensors are those :func:`fedtrain.sam.weight_mask` selects (names containing ``"weight"``).
    """
    names = list(operator.params)
    mask = dict(zip(names, weight_mask(names)))
    return operator.flatten({n: p.abs() + eta if mask[n] else torch.ones_like(p) for n, p in operator.params.items()})


def measure_seeds(seed: int) -> dict[str, int]:
    """The seed of each measure's generator (Lanczos ``seed``, trace ``seed + 1``, ascent ``seed + 3``, average ``seed + 4``)."""
    return {"lanczos": seed, "trace": seed + 1, "worst": seed + 3, "average": seed + 4}


def flatness_measures(
    operator: HessianOperator,
    settings: MeasureSettings = MeasureSettings(),
    *,
    seed: int = 0,
    on_measure: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every measure of ``settings.measures`` of the operator's model on its batches, with costs.

    Args:
        operator: the Hessian of the model's mean loss on the fixed subset (its model copy and batches
            are used for every measure; the GGN and Fisher operators are built on the same model and batches).
        settings: which measures, radii and budgets.
        seed: the base seed (:func:`measure_seeds`).
        on_measure: called with each measure's name and result as soon as it is done (progress).

    Returns:
        ``{"values": {quantity: number}, "stderr": {quantity: number}, "scale_invariant": {...},
        "weight_norm": ||w||, "products"/"losses"/"gradients"/"seconds": {measure: cost}, "converged": {...},
        "settings": ..., "seeds": ...}``; quantities are those of :data:`SCALE_INVARIANT`.
    """
    seeds = measure_seeds(seed)
    objective = ModelObjective(operator)
    center = objective.center()
    weight_norm2 = float(center @ center)
    out: dict[str, Any] = {"values": {}, "stderr": {}, "products": {}, "losses": {}, "gradients": {}, "seconds": {},
                           "converged": {}, "weight_norm": math.sqrt(weight_norm2)}

    def top(op: HessianOperator) -> tuple[float, bool, int]:
        pairs = top_eigenpairs(op, 1, tol=settings.tol, max_matvecs=settings.max_matvecs,
                               generator=torch.Generator().manual_seed(seeds["lanczos"]))
        return float(pairs.values[0]), bool(pairs.converged[0]), pairs.num_matvecs

    for name in settings.measures:
        start = time.perf_counter()
        if name == "lambda-max":
            value, ok, used = top(operator)
            out["values"].update(lambda_max=value, lambda_max_x_weight_norm2=value * weight_norm2)
            out["converged"][name], out["products"][name] = ok, used
        elif name == "trace":
            estimate = trace_hutchpp(operator, settings.trace_matvecs, generator=torch.Generator().manual_seed(seeds["trace"]))
            out["values"].update(trace=estimate.estimate, trace_x_weight_norm2=estimate.estimate * weight_norm2)
            out["stderr"].update(trace=estimate.stderr, trace_x_weight_norm2=estimate.stderr * weight_norm2)
            out["products"][name] = estimate.num_matvecs
        elif name in ("worst", "adaptive-worst"):
            adaptive = name == "adaptive-worst"
            estimate = worst_case_sharpness(
                objective, center, settings.adaptive_rho if adaptive else settings.rho, steps=settings.ascent_steps,
                scale=adaptive_scale(operator, settings.eta) if adaptive else None,
                generator=torch.Generator().manual_seed(seeds["worst"]))
            out["values"][name.replace("-", "_")] = estimate.value
            out["gradients"][name] = estimate.num_gradients
        elif name == "average":
            estimate = average_case_sharpness(objective, center, settings.sigma, samples=settings.average_samples,
                                              generator=torch.Generator().manual_seed(seeds["average"]))
            out["values"]["average"], out["stderr"]["average"] = estimate.value, estimate.stderr
            out["losses"][name] = estimate.num_losses
        else:  # ggn, fisher
            curvature = GaussNewtonOperator(operator.model, operator.loss_fn, operator.batches, kind=name,
                                            device=operator.device, check_deterministic=False)
            value, ok, used = top(curvature)
            out["values"][f"{name}_lambda_max"] = value
            out["converged"][name], out["products"][name] = ok, used
        synchronize(operator.device)
        out["seconds"][name] = time.perf_counter() - start
        if on_measure is not None:
            on_measure(name, {k: v for k, v in out["values"].items()})
    out["scale_invariant"] = {k: SCALE_INVARIANT[k] for k in out["values"]}
    out["settings"], out["seeds"] = settings.to_dict(), seeds
    return out
