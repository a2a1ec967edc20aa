"""The built-in methods FedAvg, FedSAM and FedASAM: FedAvg's loop with local SGD, SAM or ASAM (Caldarola et al., ECCV 2022).

They are :class:`~fedtrain.methods.base.Method`'s defaults with the local optimiser named: the client runs
:func:`fedtrain.client.client_update` with the round's :class:`~fedtrain.client.ClientConfig` (``optimizer``
``sgd``, ``sam`` or ``asam``; ``rho``/``eta`` from ``--rho``/``--eta``), the server takes the sample-weighted
mean delta through the FedOpt step. No client or server state besides the server momentum: a run trained
through this extension point is bit-identical to the loop that preceded it. The vectorised cohort
(:mod:`fedtrain.cohort`) implements exactly these local optimisers, so they support ``--cohort vmap``.
"""

from __future__ import annotations

from typing import ClassVar

from fedtrain.methods.base import Method

__all__ = ["FedAvg", "FedSAM", "FedASAM"]


class FedAvg(Method):
    """FedAvg (McMahan et al., AISTATS 2017): local SGD, weighted mean of the deltas, FedOpt server step."""

    name: ClassVar[str] = "fedavg"
    supports_vmap: ClassVar[bool] = True


class FedSAM(FedAvg):
    """FedSAM (Caldarola et al., ECCV 2022): local SAM with radius ``--rho`` (``ClientConfig.optimizer == "sam"``)."""

    name: ClassVar[str] = "fedsam"


class FedASAM(FedAvg):
    """FedASAM (Caldarola et al., ECCV 2022): local ASAM with ``--rho``, ``--eta`` (``ClientConfig.optimizer == "asam"``)."""

    name: ClassVar[str] = "fedasam"
