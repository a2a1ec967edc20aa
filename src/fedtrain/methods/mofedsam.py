"""MoFedSAM (Qu et al., ICML 2022): local SAM mixed with the last global update direction, as FL-Simulator implements it.

Client (FL-Simulator ``client/mofedsam.py`` with ``optimizer/ESAM.py``), every local step on batch :math:`B`:

.. math::

    g = \\alpha \\nabla L_B(w + \\varepsilon) + (1 - \\alpha) \\Delta_t, \\qquad
    g \\leftarrow \\mathrm{clip}(g, 10), \\qquad w \\leftarrow w - \\eta_l (g + \\lambda w)

with :math:`\\varepsilon = \\rho \\nabla L_B(w) / \\lVert \\nabla L_B(w) \\rVert` (:class:`~fedtrain.sam.SAM`, radius
``--rho``; ESAM adds ``1e-7`` to the norm, the toolkit's SAM ``1e-16``), :math:`\\lambda` the weight decay. Server
(``server/MoFedSAM.py``): FedAvg's step, and the direction sent with the next round's weights is the last
global update divided by the local iterations and the learning rate that made it,

.. math::

    \\Delta_{t+1} = -\\frac{\\bar\\Delta_t}{K \\eta_{l,t}}, \\qquad K = E \\, \\bar n / B,

FL-Simulator's ``Averaged_update / local_iteration / lr * -1`` with ``local_iteration = local_epochs *
n / batchsize`` (not rounded up; here :math:`\\bar n` is the mean size of the round's clients, FL-Simulator's
clients all have the same size) and :math:`\\Delta_0 = 0`. :math:`\\bar\\Delta_t` is the toolkit's
sample-weighted mean delta (FL-Simulator's unweighted mean equals it for equal client sizes). The direction is
the method's server state (``direction``, one tensor per trainable weight), checkpointed with the run.
Settings: ``alpha`` (FL-Simulator's default 0.1) and ``max_grad_norm`` (10, FL-Simulator's ``max_norm``; 0: no clipping).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from fedtrain.aggregation import aggregate
from fedtrain.client import ClientShard, ClientUpdate, client_update
from fedtrain.methods._local import add_and_clip, check_non_negative, check_unit_interval
from fedtrain.methods.base import ClientContext, Method, MethodState, ServerContext, fedopt_step

__all__ = ["MoFedSAM", "MoFedSAMSettings", "local_iterations"]


@dataclass(frozen=True)
class MoFedSAMSettings:
    """MoFedSAM's hyper-parameters: the SAM gradient's weight ``alpha`` and the gradient clipping norm (0: none)."""

    alpha: float = 0.1
    max_grad_norm: float = 10.0

    def __post_init__(self) -> None:
        check_unit_interval(self.alpha, "alpha", "mofedsam")
        check_non_negative(self.max_grad_norm, "max_grad_norm", "mofedsam")


def local_iterations(local_epochs: int, num_examples: float, batch_size: int) -> float:
    """FL-Simulator's ``local_iteration = local_epochs * n / batchsize`` (a float: the last partial batch counts fractionally)."""
    return local_epochs * (num_examples / batch_size)


class MoFedSAM(Method):
    """MoFedSAM: client SAM gradient mixed with the previous global update direction (see the module docstring)."""

    name: ClassVar[str] = "mofedsam"
    Settings: ClassVar[type] = MoFedSAMSettings

    def client_update(
        self, global_params: Mapping[str, torch.Tensor], shard: ClientShard, client_state: MethodState, ctx: ClientContext
    ) -> tuple[ClientUpdate, MethodState]:
        """Local SAM steps with the gradient ``alpha * g_SAM + (1 - alpha) * direction``, clipped; no client state."""
        direction = ctx.server_state.get("direction")
        alpha = self.settings.alpha

        def mix(named: Sequence[tuple[str, torch.nn.Parameter]]) -> None:
            add_and_clip(named, scale=alpha, add=direction, add_weight=1.0 - alpha, max_norm=self.settings.max_grad_norm)

        return client_update(ctx.worker, global_params, shard, ctx.config, ctx.generator, before_step=mix), client_state

    def server_step(
        self, global_params: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate], server_state: MethodState,
        ctx: ServerContext,
    ) -> tuple[dict[str, torch.Tensor], MethodState]:
        """FedAvg's step; the new direction is ``-mean_delta / (K * lr)`` (FL-Simulator ``server/MoFedSAM.py``)."""
        mean_delta = aggregate(updates)
        params, state = fedopt_step(global_params, mean_delta, server_state, ctx.config)
        mean_size = sum(u.num_examples for u in updates) / len(updates)
        steps = local_iterations(ctx.config.local_epochs, mean_size, ctx.config.batch_size)
        # every floating entry of the state dict, as the weights; the clients use the trainable ones
        direction = {name: delta / steps / ctx.lr * -1.0 for name, delta in mean_delta.items() if delta.is_floating_point()}
        return params, {**state, "direction": direction}
