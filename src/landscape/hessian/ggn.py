"""The generalised Gauss-Newton and the empirical Fisher of a model's mean loss, as linear operators next to the Hessian.

For outputs :math:`z_i = f_\\theta(x_i)`, Jacobians :math:`J_i = \\partial z_i / \\partial \\theta` and a loss
:math:`\\ell(z_i, y_i)` convex in the outputs (cross-entropy), the Hessian of the mean loss splits as

.. math::

    H = \\underbrace{\\frac{1}{N} \\sum_i J_i^\\top \\nabla^2_z \\ell_i \\, J_i}_{G\\ (\\text{GGN})}
        + \\frac{1}{N} \\sum_i \\sum_c \\frac{\\partial \\ell_i}{\\partial z_{ic}} \\nabla^2_\\theta z_{ic},
    \\qquad
    F_{\\mathrm{emp}} = \\frac{1}{N} \\sum_i \\nabla_\\theta \\ell_i \\, \\nabla_\\theta \\ell_i^\\top
        = \\frac{1}{N} \\sum_i J_i^\\top r_i r_i^\\top J_i, \\quad r_i = \\nabla_z \\ell_i .

The GGN drops the second term (it equals the Hessian when the outputs are linear in the parameters, e.g.
softmax regression); for cross-entropy it is also the Fisher of the model's predictive distribution. The
*empirical* Fisher puts the observed labels' gradients in place of the model's expectation, and Kunstner,
Balles & Hennig (NeurIPS 2019, "Limitations of the empirical Fisher approximation") show that it can
differ from both by orders of magnitude, most of all near a minimum where the gradients vanish.

Both products are ``J^T M J v`` through the outputs with ``torch.func``: ``jvp`` for ``J v``, the
output-space curvature ``M`` (``jvp`` of the loss's output gradient for the GGN; ``r r^T`` for the
empirical Fisher), and ``vjp`` for ``J^T``. :class:`GaussNewtonOperator` is a
:class:`~landscape.hessian.operator.HessianOperator` whose per-batch product is replaced, so it shares
its model copy, data placement, count weighting over batches, flattening and determinism check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp

from fedtrain.errors import ConfigError
from landscape.hessian.hvp import Batch, LossFunction, full_precision
from landscape.hessian.operator import HessianOperator

__all__ = ["CURVATURES", "GaussNewtonOperator"]

CURVATURES: tuple[str, ...] = ("ggn", "fisher")


class GaussNewtonOperator(HessianOperator):
    """The GGN (``kind="ggn"``) or empirical Fisher (``kind="fisher"``) of the mean loss over fixed batches.

    Same conventions as :class:`~landscape.hessian.operator.HessianOperator` (a private eval-mode copy of
    the model on ``device``, count-weighted batches, float64 vectors); each product is one forward-mode
    and one reverse-mode pass per batch. The loss must be a mean over samples whose per-sample term
    depends on that sample's outputs only (cross-entropy), which is what makes the per-sample output
    gradients of the empirical Fisher ``n_b`` times the rows of the batch loss's output gradient.

    Args:
        model: the network (not modified).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` with mean reduction.
        batches: ``(inputs, targets)`` pairs.
        kind: ``"ggn"`` or ``"fisher"`` (the empirical Fisher).
        device, dtype, bn_mode, check_deterministic: as for the Hessian operator.

    Raises:
        ConfigError: an unknown ``kind``, a model without forward-mode derivatives, or anything the Hessian
            operator refuses.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        batches: Sequence[Batch],
        *,
        kind: Literal["ggn", "fisher"] = "ggn",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        bn_mode: Literal["eval", "train"] = "eval",
        check_deterministic: bool = True,
    ) -> None:
        if kind not in CURVATURES:
            raise ConfigError(f"kind must be one of {', '.join(CURVATURES)}, got {kind!r}.")
        super().__init__(model, loss_fn, batches, device=device, dtype=dtype, bn_mode=bn_mode,
                         check_deterministic=check_deterministic, cache_graph=False, matmat_method="loop")
        if self.method != "fwd-rev":
            raise ConfigError(f"The {kind.upper()} product needs forward-mode derivatives (torch.func.jvp) through the model, "
                              "which one of its layers does not have. Use the Hessian (landscape.hessian.operator) instead.")
        self.kind = kind

    def _batch_products(self, tangent: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        return [self._product(batch, tangent) for batch in self.batches]

    def _product(self, batch: Batch, tangent: dict[str, Tensor]) -> dict[str, Tensor]:
        """``J^T M J v`` on one batch (``M`` the output curvature of the mean batch loss)."""
        inputs, targets = batch

        def outputs_of(params: dict[str, Tensor]) -> Tensor:
            return functional_call(self.model, params, (inputs,))

        def loss_of_outputs(outputs: Tensor) -> Tensor:
            return self.loss_fn(outputs, targets)

        with torch.enable_grad(), full_precision(self.device):
            outputs, jv = jvp(outputs_of, (self.params,), (tangent,))
            if self.kind == "ggn":
                _, cotangent = jvp(grad(loss_of_outputs), (outputs,), (jv,))
            else:
                count = outputs.shape[0]
                per_sample = grad(loss_of_outputs)(outputs) * count  # r_i: gradients of the per-sample losses
                dots = (per_sample * jv).flatten(1).sum(dim=1)
                cotangent = per_sample * dots.reshape(-1, *([1] * (per_sample.ndim - 1))) / count
            _, pullback = vjp(outputs_of, self.params)
            (product,) = pullback(cotangent)
        return {name: t.detach() for name, t in product.items()}
