"""FedProx (Li et al., MLSys 2020) as a fedlandscape method: a proximal term on the client, FedAvg's server step.

Train it from the folder that holds this file (or with that folder on PYTHONPATH):

    landscape train --preset quick --algorithm fedprox:FedProx --method-arg mu=0.01 --out runs/fedprox
"""

from __future__ import annotations

from dataclasses import dataclass

from fedtrain.client import client_update
from fedtrain.methods import Method


class FedProx(Method):
    """Local SGD on L_i(w) + mu/2 ||w - w_t||^2, w_t the round's global weights; the server averages (inherited)."""

    name = "fedprox"

    @dataclass(frozen=True)
    class Settings:
        mu: float = 0.01  # the proximal weight: --method-arg mu=0.1

    def client_update(self, global_params, shard, client_state, ctx):
        anchor = {name: global_params[name] for name, _ in ctx.worker.named_parameters()}

        def proximal(named):  # .grad holds the step's gradient; the optimiser steps after this
            for name, p in named:
                p.grad.add_(p.detach() - anchor[name], alpha=self.settings.mu)

        update = client_update(ctx.worker, global_params, shard, ctx.config, ctx.generator, before_step=proximal)
        return update, client_state  # no state kept between rounds: the client state stays {}

    # server_step is Method's: the sample-weighted mean delta through the FedOpt step (--server-lr, --server-momentum).
    # A stateful method returns its new client state above and overrides
    #     server_step(self, global_params, updates, server_state, ctx) -> (new global weights, new server state);
    # both states are dicts of tensors and numbers, saved in every checkpoint, so --resume is exact.
