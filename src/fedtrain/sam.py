"""SAM and ASAM as local optimisers: the pure perturbation formulas and a two-phase wrapper around SGD.

For a mini-batch loss :math:`L_B`, sharpness-aware minimisation (Foret et al., ICLR 2021) takes the SGD
step with the gradient at an adversarially perturbed point:

.. math::

    g = \\nabla L_B(w), \\qquad \\varepsilon = \\rho \\, \\frac{g}{\\lVert g \\rVert_2}, \\qquad
    w \\leftarrow w - \\eta_l \\left(\\nabla L_B(w + \\varepsilon) + \\lambda w\\right)

with one global L2 norm over every parameter, biases included. Adaptive SAM (Kwon et al., ICML 2021)
rescales the neighbourhood with :math:`T_w = |w| + \\eta` on weight tensors and :math:`T_w = 1` on biases:

.. math::

    \\varepsilon = \\rho \\, \\frac{T_w^2 g}{\\lVert T_w g \\rVert_2}.

Both follow the FedSAM reference code (Caldarola et al., ECCV 2022, ``models/clients/minimizers.py``):
the norm gets ``+ 1e-16``, the second pass uses the same batch, and the weight decay of the base SGD
step is applied at the *unperturbed* weights because the weights are restored before stepping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from fedtrain.errors import ConfigError

__all__ = ["NORM_EPS", "sam_epsilon", "asam_epsilon", "weight_mask", "SAM"]

NORM_EPS = 1e-16  # added to the norm, as in the reference code, so a zero gradient gives a zero step


def _global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One L2 norm over all tensors, as if they were concatenated."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))


def sam_epsilon(grads: Sequence[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """SAM's ascent step :math:`\\varepsilon = \\rho\\, g / (\\lVert g \\rVert_2 + 10^{-16})`.

    Args:
        grads: the gradient, one tensor per parameter.
        rho: neighbourhood radius, ``>= 0``.

    Returns:
        One perturbation tensor per gradient tensor.
    """
    scale = rho / (_global_norm(grads) + NORM_EPS)
    return torch._foreach_mul(list(grads), scale)


def asam_epsilon(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], rho: float, eta: float, mask: Sequence[bool]
) -> list[torch.Tensor]:
    """ASAM's ascent step :math:`\\varepsilon = \\rho\\, T^2 g / (\\lVert T g \\rVert_2 + 10^{-16})`.

    Args:
        params: the current weights, one tensor per parameter.
        grads: the gradient at ``params``.
        rho: neighbourhood radius, ``>= 0``.
        eta: the offset of the normalisation operator :math:`T = |w| + \\eta`.
        mask: per parameter, whether it is a weight tensor (``T = |w| + eta``) or not (``T = 1``, biases).

    Returns:
        One perturbation tensor per gradient tensor.
    """
    scaled = [g * (p.abs() + eta) if is_weight else g for p, g, is_weight in zip(params, grads, mask)]
    scale = rho / (_global_norm(scaled) + NORM_EPS)
    return [s * (p.abs() + eta) * scale if is_weight else s * scale for p, s, is_weight in zip(params, scaled, mask)]


def weight_mask(names: Sequence[str]) -> list[bool]:
    """The reference's ASAM rule: a parameter is normalised when its name contains ``"weight"``."""
    return ["weight" in name for name in names]


class SAM:
    """Two-phase SAM / ASAM step around a ``torch.optim.SGD`` (or any base optimiser).

    Usage per mini-batch::

        loss_fn(model, batch).backward()      # gradient at w
        sam.perturb()                         # w <- w + eps, gradients cleared
        loss_fn(model, batch).backward()      # gradient at w + eps
        sam.restore_and_step()                # w <- saved w, base step with that gradient

    Args:
        named_params: ``(name, parameter)`` pairs, the same parameters the base optimiser updates.
        base: the base optimiser.
        rho: neighbourhood radius, ``>= 0``.
        adaptive: ASAM (``True``) or SAM (``False``).
        eta: ASAM's offset (ignored by SAM).

    Raises:
        ConfigError: ``rho < 0`` or ``eta < 0``.
    """

    def __init__(
        self,
        named_params: Sequence[tuple[str, torch.nn.Parameter]],
        base: torch.optim.Optimizer,
        *,
        rho: float,
        adaptive: bool = False,
        eta: float = 0.0,
    ) -> None:
        if rho < 0:
            raise ConfigError(f"rho must be >= 0, got {rho}. SAM/ASAM need a non-negative radius (0 is plain SGD).")
        if eta < 0:
            raise ConfigError(f"eta must be >= 0, got {eta}. ASAM needs a non-negative offset in T = |w| + eta.")
        self.names = [name for name, _ in named_params]
        self.params = [param for _, param in named_params]
        self.mask = weight_mask(self.names)
        self.base = base
        self.rho = rho
        self.adaptive = adaptive
        self.eta = eta
        # The weights saved by perturb(); the buffers are allocated once and refilled with one foreach copy
        # per step (one kernel launch on a GPU, not one clone per tensor).
        self._buffers: list[torch.Tensor] | None = None
        self._saved: list[torch.Tensor] | None = None

    @torch.no_grad()
    def perturb(self) -> list[torch.Tensor]:
        """Move to ``w + eps`` using the gradients currently in ``.grad``; save ``w``; clear the gradients.

        Returns:
            The perturbation that was added.
        """
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if self.adaptive:
            eps = asam_epsilon(self.params, grads, self.rho, self.eta, self.mask)
        else:
            eps = sam_epsilon(grads, self.rho)
        if self._buffers is None:
            self._buffers = [torch.empty_like(p) for p in self.params]
        torch._foreach_copy_(self._buffers, [p.detach() for p in self.params])
        self._saved = self._buffers
        torch._foreach_add_(self.params, eps)
        for p in self.params:
            p.grad = None
        return eps

    @torch.no_grad()
    def restore_and_step(self, before_step: Callable[[], None] | None = None) -> None:
        """Copy the saved ``w`` back (exactly, not ``w + eps - eps``) and take the base step.

        Args:
            before_step: called between the restore and the step (the weights are ``w`` again, ``.grad``
                holds the gradient at ``w + eps``), e.g. to add a method's correction to the gradient.

        Raises:
            RuntimeError: called before :meth:`perturb`.
        """
        if self._saved is None:
            raise RuntimeError("restore_and_step() called before perturb()")
        torch._foreach_copy_(self.params, self._saved)
        self._saved = None
        if before_step is not None:
            before_step()
        self.base.step()

    def state_dict(self) -> dict[str, Any]:
        """The base optimiser's state (momentum buffers) and SAM's settings."""
        return {"base": self.base.state_dict(), "rho": self.rho, "adaptive": self.adaptive, "eta": self.eta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.base.load_state_dict(state["base"])
        self.rho, self.adaptive, self.eta = float(state["rho"]), bool(state["adaptive"]), float(state["eta"])
