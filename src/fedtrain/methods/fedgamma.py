"""FedGAMMA (Dai et al., IEEE TNNLS 2023): local SAM with SCAFFOLD's control variates, as FL-Simulator implements it.

Client :math:`i` (FL-Simulator ``client/fedgamma.py`` with ``optimizer/ESAM.py``), every local step on batch :math:`B`:

.. math::

    g = \\nabla L_B(w + \\varepsilon) + (c - c_i), \\qquad g \\leftarrow \\mathrm{clip}(g, 10), \\qquad
    w \\leftarrow w - \\eta_l (g + \\lambda w)

with :math:`\\varepsilon` SAM's (:class:`~fedtrain.sam.SAM`, radius ``--rho``), :math:`c` the server's control
variate and :math:`c_i` the client's. After local training the client's control variate follows SCAFFOLD's
option II (Karimireddy et al., ICML 2020) as FL-Simulator's ``server/FedGamma.py`` (``postprocess``) writes it,

.. math::

    c_i^+ = c_i - c - \\frac{\\Delta_i}{K \\eta_l}, \\qquad K = E\\, n_i / B

(``local_iteration = local_epochs * n / batchsize``, not rounded up; :math:`\\Delta_i` the client's delta), and
it sends :math:`c_i^+ - c_i` with its delta (``extras["delta_c"]``). Server (``global_update``): FedAvg's step
on the mean delta, and :math:`c \\leftarrow c + \\sum_{i \\in S_t} (c_i^+ - c_i) / N` with :math:`N` the number of
clients. Both start at zero. :math:`c_i` is the client's state (``c``), :math:`c` the server's (``c``), one tensor
per trainable weight, both checkpointed, so a resumed run is bit-identical. Settings: ``max_grad_norm``
(10, FL-Simulator's ``max_norm``; 0: no clipping).
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
from fedtrain.methods.mofedsam import local_iterations

__all__ = ["FedGAMMA", "FedGAMMASettings"]


@dataclass(frozen=True)
class FedGAMMASettings:
    """FedGAMMA's hyper-parameter: the gradient clipping norm (0: none)."""

    max_grad_norm: float = 10.0

    def __post_init__(self) -> None:
        check_non_negative(self.max_grad_norm, "max_grad_norm", "fedgamma")


class FedGAMMA(Method):
    """FedGAMMA: SAM plus SCAFFOLD control variates (client state ``c_i``, server state ``c``; see the module docstring)."""

    name: ClassVar[str] = "fedgamma"
    Settings: ClassVar[type] = FedGAMMASettings

    def client_update(
        self, global_params: Mapping[str, torch.Tensor], shard: ClientShard, client_state: MethodState, ctx: ClientContext
    ) -> tuple[ClientUpdate, MethodState]:
        """Local SAM steps corrected by ``c - c_i``; the new ``c_i`` (option II) is the client's state, its change is sent."""
        names = trainable_names(ctx.worker)
        c = ctx.server_state.get("c") or zeros_for(global_params, names)
        c_i = client_state.get("c") or zeros_for(global_params, names)
        correction = {name: c[name] - c_i[name] for name in names}

        def correct(named: Sequence[tuple[str, torch.nn.Parameter]]) -> None:
            add_and_clip(named, add=correction, max_norm=self.settings.max_grad_norm)

        update = client_update(ctx.worker, global_params, shard, ctx.config, ctx.generator, before_step=correct)
        steps = local_iterations(ctx.config.local_epochs, shard.num_examples, ctx.config.batch_size)
        new_c_i = {name: c_i[name] - c[name] - update.delta[name] / steps / ctx.config.lr for name in names}
        delta_c = {name: new_c_i[name] - c_i[name] for name in names}
        return replace(update, extras={**update.extras, "delta_c": delta_c}), {"c": new_c_i}

    def server_step(
        self, global_params: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate], server_state: MethodState,
        ctx: ServerContext,
    ) -> tuple[dict[str, torch.Tensor], MethodState]:
        """FedAvg's step on the mean delta; ``c <- c + sum_i delta_c_i / N`` (FL-Simulator ``server/FedGamma.py``)."""
        params, state = fedopt_step(global_params, aggregate(updates), server_state, ctx.config)
        names = list(updates[0].extras["delta_c"])
        c = server_state.get("c") or zeros_for(global_params, names)
        total = {name: sum(u.extras["delta_c"][name] for u in updates) for name in names}
        return params, {**state, "c": {name: c[name] + total[name] / ctx.config.num_clients for name in names}}
