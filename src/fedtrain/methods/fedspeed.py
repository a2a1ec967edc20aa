"""FedSpeed (Sun et al., ICLR 2023): local SAM with a prox-correction term and a dual variable per client, as FL-Simulator implements it.

Client :math:`i` of round :math:`t`, from the global weights :math:`w_t` (FL-Simulator ``client/fedspeed.py`` with
``optimizer/ESAM.py``), every local step on batch :math:`B`:

.. math::

    g = \\mathrm{clip}\\big(\\nabla L_B(w + \\varepsilon) + \\lambda (h_i - w_t), 10\\big), \\qquad
    w \\leftarrow w - \\eta_l \\big(g + (\\mu + \\lambda) w\\big),

i.e. the gradient of :math:`L_B + \\tfrac{\\lambda}{2}\\lVert w - w_t + h_i \\rVert^2` with SAM's
:math:`\\varepsilon = \\rho \\nabla L_B(w) / \\lVert \\nabla L_B(w) \\rVert` (:class:`~fedtrain.sam.SAM`, radius ``--rho``;
ESAM adds ``1e-7`` to the norm, the toolkit's SAM ``1e-16``), :math:`\\mu` the weight decay (FL-Simulator's SGD
gets ``weight_decay + lamb``: the :math:`\\lambda w` part is not clipped), then the dual
:math:`h_i \\leftarrow h_i + (w_K - w_t)` (``server/FedSpeed.py`` ``postprocess``; the client's state here). Server:

.. math::

    w_{t+1} = \\mathrm{ServerOpt}(w_t, \\bar\\Delta_t) + \\frac{1}{N} \\sum_{j=1}^{N} h_j,

FL-Simulator's ``Averaged_model + mean(h_params_list)`` (the mean over *all* :math:`N` clients, those never sampled
holding :math:`h_j = 0`, after this round's duals are updated); the server keeps :math:`\\sum_j h_j` (``h_sum``) in
its state. :math:`\\bar\\Delta_t` is the toolkit's sample-weighted mean delta (FL-Simulator's unweighted mean equals
it for equal client sizes). Settings: ``lamb`` (:math:`\\lambda`, FL-Simulator's default 0.1) and ``max_grad_norm``
(10; 0: none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from fedtrain.aggregation import aggregate
from fedtrain.client import ClientShard, ClientUpdate, client_update
from fedtrain.methods._local import add_and_clip, check_non_negative, trainable_names, zeros_for
from fedtrain.methods.base import ClientContext, Method, MethodState, ServerContext, fedopt_step

__all__ = ["FedSpeed", "FedSpeedSettings"]


@dataclass(frozen=True)
class FedSpeedSettings:
    """FedSpeed's hyper-parameters besides ``--rho``: the prox-correction weight ``lamb`` and the clipping norm (0: none)."""

    lamb: float = 0.1
    max_grad_norm: float = 10.0

    def __post_init__(self) -> None:
        check_non_negative(self.lamb, "lamb", "fedspeed")
        check_non_negative(self.max_grad_norm, "max_grad_norm", "fedspeed")


class FedSpeed(Method):
    """FedSpeed: local SAM with the prox-correction ``lamb (w - w_t + h_i)``, per-client duals (see the module docstring)."""

    name: ClassVar[str] = "fedspeed"
    Settings: ClassVar[type] = FedSpeedSettings

    def client_update(
        self, global_params: Mapping[str, torch.Tensor], shard: ClientShard, client_state: MethodState, ctx: ClientContext
    ) -> tuple[ClientUpdate, MethodState]:
        """Local SAM with the correction; the new dual ``h_i + delta`` is the client's state."""
        names = trainable_names(ctx.worker)
        dual = client_state.get("h") or zeros_for(global_params, names)
        correction = {n: dual[n] - global_params[n] for n in names}  # FL-Simulator's Local_dual_correction
        s = self.settings

        def corrected(named: Sequence[tuple[str, torch.nn.Parameter]]) -> None:
            add_and_clip(named, add=correction, add_weight=s.lamb, max_norm=s.max_grad_norm)

        cfg = replace(ctx.config, weight_decay=ctx.config.weight_decay + s.lamb)  # the lamb * w part, unclipped
        update = client_update(ctx.worker, global_params, shard, cfg, ctx.generator, before_step=corrected)
        return update, {"h": {n: dual[n] + update.delta[n] for n in names}}

    def server_step(
        self, global_params: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate], server_state: MethodState,
        ctx: ServerContext,
    ) -> tuple[dict[str, torch.Tensor], MethodState]:
        """FedOpt with the mean delta, plus the mean dual over all clients; ``h_sum`` gains this round's deltas."""
        names = list(updates[0].client_state["h"])  # the trainable weights (the clients' duals hold exactly those)
        h_sum = server_state.get("h_sum") or zeros_for(global_params, names)
        h_sum = {n: h_sum[n] + sum(u.delta[n] for u in updates) for n in names}
        rest = {k: v for k, v in server_state.items() if k != "h_sum"}
        params, state = fedopt_step(global_params, aggregate(updates), rest, ctx.config)
        num_clients = ctx.config.num_clients
        params = {n: v + h_sum[n] / num_clients if n in h_sum else v for n, v in params.items()}
        return params, {**state, "h_sum": h_sum}
