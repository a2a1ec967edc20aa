"""FedLESAM (Fan et al., ICML 2024): local SAM with the perturbation estimated from the last global update, one backward pass a step.

Client, every local step on batch :math:`B` of round :math:`t` (MediaBrain-SJTU/FedLESAM ``client/fedlesam.py``
with ``optimizer/LESAM.py``):

.. math::

    \\varepsilon = -\\rho \\, \\frac{w_t - w_{t-1}}{\\lVert w_t - w_{t-1} \\rVert_2}, \\qquad
    g = \\mathrm{clip}\\big(\\nabla L_B(w + \\varepsilon), 10\\big), \\qquad w \\leftarrow w - \\eta_l (g + \\lambda w)

where :math:`w_t - w_{t-1}` is the last global update as the server sends it (the official server's
``global_update = global_learning_rate * Averaged_update``; here the difference of the two global models,
which is the same without server momentum). The global update approximates minus the global gradient, so
:math:`\\varepsilon` points uphill on the *global* loss without a gradient pass of its own: one forward and
one backward pass a step, against SAM's two. In round 0 there is no global update and the step is SGD's.
:math:`\\rho` is ``--rho`` (FedLESAM's ``train.py`` default 0.1), :math:`\\lambda` the weight decay, and the
gradient is clipped at ``max_grad_norm`` (10, the FL-Simulator ``max_norm`` the official client inherits; 0:
none). Server: FedAvg's step (:func:`~fedtrain.methods.base.fedopt_step`); the new global update is its server
state (``global_update``, one tensor per floating state-dict entry), checkpointed with the run.

The perturbation is the same for every step of a round, so descending at :math:`w + \\varepsilon` with the
gradient taken there is SGD on :math:`u = w + \\varepsilon` with the weight decay taken at :math:`u - \\varepsilon`:
the client trains :math:`u` from :math:`w_t + \\varepsilon` (the toolkit's SGD loop, nothing copied or restored
per step) and returns :math:`u_K - u_0 = w_K - w_t`, equal to the perturb/restore loop up to float rounding.

Where the official code differs from the paper's rule, this module follows the paper: ``LESAM.first_step``
indexes the flat global-update vector by parameter index (``g_update[idx]``, a scalar per parameter tensor)
and sums per-tensor norms; here :math:`\\varepsilon` is the whole update over its one L2 norm (``+ 1e-16``,
:func:`fedtrain.sam.sam_epsilon`; the official code adds ``1e-7``). The paper describes the difference between
the models a client received in its previous and current participation; the official server sends the last
round's global update to every client, which is what this module does (no per-client copy of the model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from fedtrain.client import ClientShard, ClientUpdate, client_update
from fedtrain.methods._local import add_and_clip, check_non_negative, trainable_names
from fedtrain.methods.base import ClientContext, Method, MethodState, ServerContext
from fedtrain.sam import sam_epsilon

__all__ = ["FedLESAM", "FedLESAMSettings", "lesam_epsilon"]


@dataclass(frozen=True)
class FedLESAMSettings:
    """FedLESAM's hyper-parameter besides ``--rho``: the gradient clipping norm (FL-Simulator's 10; 0: none)."""

    max_grad_norm: float = 10.0

    def __post_init__(self) -> None:
        check_non_negative(self.max_grad_norm, "max_grad_norm", "fedlesam")


def lesam_epsilon(global_update: Sequence[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """FedLESAM's perturbation :math:`\\varepsilon = -\\rho\\, \\Delta / (\\lVert \\Delta \\rVert_2 + 10^{-16})` of the last global update :math:`\\Delta`.

    Args:
        global_update: :math:`w_t - w_{t-1}`, one tensor per trainable parameter.
        rho: neighbourhood radius, ``>= 0``.

    Returns:
        One perturbation tensor per parameter (zeros for a zero update).
    """
    return sam_epsilon(global_update, -rho)


class FedLESAM(Method):
    """FedLESAM: SAM whose ascent direction is minus the last global update (see the module docstring)."""

    name: ClassVar[str] = "fedlesam"
    Settings: ClassVar[type] = FedLESAMSettings

    def client_update(
        self, global_params: Mapping[str, torch.Tensor], shard: ClientShard, client_state: MethodState, ctx: ClientContext
    ) -> tuple[ClientUpdate, MethodState]:
        """Local steps with the gradient at ``w + eps`` (one pass each), weight decay at ``w``; no client state."""
        max_norm = self.settings.max_grad_norm
        update = ctx.server_state.get("global_update")
        if update is None:  # round 0: no global update yet, plain local SGD (clipped as the official client)
            return client_update(ctx.worker, global_params, shard, ctx.config, ctx.generator,
                                 before_step=lambda named: add_and_clip(named, max_norm=max_norm)), client_state
        names = trainable_names(ctx.worker)
        eps = dict(zip(names, lesam_epsilon([update[n] for n in names], ctx.config.rho)))
        start = {n: v + eps[n] if n in eps else v for n, v in global_params.items()}
        decay = ctx.config.weight_decay

        def at_w(named: Sequence[tuple[str, torch.nn.Parameter]]) -> None:
            add_and_clip(named, max_norm=max_norm)  # the gradient alone is clipped, as the official client does
            if decay:  # SGD adds decay * u = decay * (w + eps); the official step decays w, the weights without eps
                add_and_clip(named, add=eps, add_weight=-decay)

        return client_update(ctx.worker, start, shard, ctx.config, ctx.generator, before_step=at_w), client_state

    def server_step(
        self, global_params: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate], server_state: MethodState,
        ctx: ServerContext,
    ) -> tuple[dict[str, torch.Tensor], MethodState]:
        """FedAvg's step; the server state keeps ``global_update = w_{t+1} - w_t`` for the next round's clients."""
        params, state = super().server_step(global_params, updates, server_state, ctx)
        change = {n: params[n] - v for n, v in global_params.items() if v.is_floating_point()}
        return params, {**state, "global_update": change}
