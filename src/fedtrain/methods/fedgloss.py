"""FedGloSS (Caldarola et al., CVPR 2025): SAM on the server with the previous pseudo-gradient, local SAM, and an ADMM dual on both sides.

As the authors' code runs it (pietrocagnasso/fedgloss ``codebase/servers/fedgloss_server.py``,
``clients/fedgloss_client.py``, ``clients/minimizers.py``). Round :math:`t` sends the clients the global model
perturbed along the previous pseudo-gradient :math:`\\tilde g = -\\bar\\Delta_{t-1}` (none in round 0):

.. math::

    \\tilde w_t = w_t + \\rho_s \\, \\frac{\\tilde g}{\\lVert \\tilde g \\rVert_2}.

Client :math:`i` runs local SAM (radius ``--rho``, :class:`~fedtrain.sam.SAM`) from :math:`\\tilde w_t` with the
ADMM terms added to the gradient at the perturbed point, after the weights are restored,

.. math::

    g = \\nabla L_B(w + \\varepsilon) - h_i + \\frac{w - \\tilde w_t}{\\beta}, \\qquad
    w \\leftarrow w - \\eta_l (g + \\lambda w), \\qquad\\text{then}\\quad h_i \\leftarrow h_i - \\frac{w_K - \\tilde w_t}{\\beta},

and sends :math:`\\Delta_i = w_K - \\tilde w_t`. The server updates its dual, takes the FedOpt step from the
*unperturbed* :math:`w_t` with the mean delta (the SAM descent: the gradient taken at :math:`\\tilde w_t`, applied
at :math:`w_t`), keeps :math:`-\\bar\\Delta_t` as the next pseudo-gradient, and subtracts the dual:

.. math::

    \\sigma \\leftarrow \\sigma - \\frac{\\sum_{i \\in S_t} \\Delta_i}{\\beta N |S_t|}, \\qquad
    w_{t+1} = \\mathrm{ServerOpt}(w_t, \\bar\\Delta_t) - \\beta \\sigma,

with :math:`N` the number of clients (``--num-clients``), :math:`\\bar\\Delta_t` the sample-weighted mean delta
and :math:`\\sigma`'s sum unweighted, as in the code. State: the server's ``sigma`` and ``pseudo_grad``, each
client's ``dual`` (one tensor per trainable weight), all checkpointed with the run. Settings: ``server_rho``
(:math:`\\rho_s`, 0.15), ``beta`` (10), both the values of the authors' ``paper_experiments`` scripts, which also
use ``--rho-l 0.15`` (``--rho`` here; default 0.15); ``warmup_rounds`` (``--T-s``, default 0: none) ramps both
radii linearly from ``rho0`` (0.001) over that many rounds.

Differences from the authors' code, each stated: the client's anchor and dual update are per round (the code
re-anchors at the start of each local epoch; the same for ``E = 1``, the paper's setting); the server's warm-up
ramp is the linear one the code intends (its list adds the step to the *client's* final radius, so the server
radius jumps to about :math:`\\rho_l` after round 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from fedtrain.aggregation import aggregate
from fedtrain.client import ClientShard, ClientUpdate, client_update
from fedtrain.errors import ConfigError
from fedtrain.methods._local import check_non_negative, trainable_names
from fedtrain.methods.base import ClientContext, Method, MethodState, ServerContext, fedopt_step
from fedtrain.sam import sam_epsilon

__all__ = ["FedGloSS", "FedGloSSSettings", "warmup_rho"]


@dataclass(frozen=True)
class FedGloSSSettings:
    """FedGloSS's hyper-parameters besides the clients' ``--rho``: the server radius, the ADMM ``beta``, the warm-up."""

    server_rho: float = 0.15
    beta: float = 10.0
    warmup_rounds: int = 0
    rho0: float = 0.001

    def __post_init__(self) -> None:
        check_non_negative(self.server_rho, "server_rho", "fedgloss")
        check_non_negative(self.rho0, "rho0", "fedgloss")
        check_non_negative(self.warmup_rounds, "warmup_rounds", "fedgloss")
        if not self.beta > 0:
            raise ConfigError(f"method 'fedgloss' setting beta (--method-arg beta=...) must be > 0, got {self.beta}.")


def warmup_rho(round_index: int, rho: float, *, rho0: float, warmup_rounds: int) -> float:
    """The radius of round ``round_index``: ``rho0 + min(t, T_s) (rho - rho0) / T_s`` when ``T_s > 1`` (the authors' ``--T-s``), else ``rho``."""
    if warmup_rounds <= 1:
        return rho
    return rho0 + min(round_index, warmup_rounds) * ((rho - rho0) / warmup_rounds)


class FedGloSS(Method):
    """FedGloSS: server-side SAM along the previous pseudo-gradient, client SAM, ADMM duals (see the module docstring)."""

    name: ClassVar[str] = "fedgloss"
    Settings: ClassVar[type] = FedGloSSSettings

    def _rho(self, round_index: int, rho: float) -> float:
        s = self.settings
        return warmup_rho(round_index, rho, rho0=s.rho0, warmup_rounds=s.warmup_rounds)

    def client_update(
        self, global_params: Mapping[str, torch.Tensor], shard: ClientShard, client_state: MethodState, ctx: ClientContext
    ) -> tuple[ClientUpdate, MethodState]:
        """Local SAM with the ADMM terms from the perturbed global model; the new dual is the client's state."""
        names = trainable_names(ctx.worker)
        pseudo_grad = ctx.server_state.get("pseudo_grad")
        start = dict(global_params)
        if pseudo_grad is not None:
            eps = sam_epsilon([pseudo_grad[n] for n in names], self._rho(ctx.round, self.settings.server_rho))
            start.update({n: global_params[n] + e for n, e in zip(names, eps)})
        dual = client_state.get("dual") or {n: torch.zeros_like(global_params[n]) for n in names}
        beta = self.settings.beta

        def admm(named: Sequence[tuple[str, torch.nn.Parameter]]) -> None:
            for n, p in named:
                if p.grad is None:
                    continue
                p.grad.sub_(dual[n])
                p.grad.add_((p - start[n]) / beta)

        cfg = replace(ctx.config, optimizer="sam", rho=self._rho(ctx.round, ctx.config.rho))
        update = client_update(ctx.worker, start, shard, cfg, ctx.generator, before_step=admm)
        new_dual = {n: dual[n] - update.delta[n] / beta for n in names}
        return update, {"dual": new_dual}

    def server_step(
        self, global_params: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate], server_state: MethodState,
        ctx: ServerContext,
    ) -> tuple[dict[str, torch.Tensor], MethodState]:
        """The dual update, FedOpt from the unperturbed weights, the new pseudo-gradient, minus ``beta * sigma``."""
        beta = self.settings.beta
        names = list(updates[0].client_state["dual"])  # the trainable weights (the clients' duals hold exactly those)
        mine = ("sigma", "pseudo_grad")
        sigma = server_state.get("sigma") or {n: torch.zeros_like(global_params[n]) for n in names}
        scale = beta * ctx.config.num_clients * len(updates)
        sigma = {n: sigma[n] - sum(u.delta[n] for u in updates) / scale for n in names}
        mean_delta = aggregate(updates)
        params, state = fedopt_step(global_params, mean_delta, {k: v for k, v in server_state.items() if k not in mine}, ctx.config)
        params = {n: v - beta * sigma[n] if n in sigma else v for n, v in params.items()}
        return params, {**state, "sigma": sigma, "pseudo_grad": {n: -mean_delta[n] for n in names}}
