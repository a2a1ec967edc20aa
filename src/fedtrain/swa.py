"""Server-side stochastic weight averaging (Izmailov et al., UAI 2018) as FedSAM uses it: cyclical client lr, running mean.

From round ``start`` on, the clients' learning rate cycles every ``c`` rounds,

.. math::

    s = \\frac{(t \\bmod c) + 1}{c}, \\qquad \\eta_t = (1 - s)\\,\\eta_1 + s\\,\\eta_2,

(``models/utils/main_utils.py: schedule_cycling_lr`` of the FedSAM reference; applied only when
``c > 1``), and the SWA model is the running mean of global models taken once per cycle.

**When a model is collected** (``collect``):

``"end"`` (default, SWA proper)
    after each round whose lr is the cycle's lowest (``t mod c = c - 1``, lr :math:`\\eta_2`), from
    ``start`` on. The SWA model exists once the first model is collected.
``"reference"`` (the FedSAM code)
    the SWA model is a copy of the global model at round ``start`` (before training), and a model is
    collected after every round ``t > start`` with ``(t - start) mod c = 0``. With ``start`` a multiple
    of ``c`` those are the rounds with the cycle's *highest* lr, :math:`0.9\\eta_1 + 0.1\\eta_2` for
    ``c = 10``; the lowest-lr model is never collected. The first collection overwrites the copy.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fedtrain.config import SWA_COLLECT_MODES
from fedtrain.errors import ConfigError

__all__ = ["cyclic_lr", "starts_swa_model", "collects", "swa_average"]


def cyclic_lr(round: int, *, lr: float, swa_lr: float, cycle: int, start: int) -> float:
    """The client learning rate of round ``round`` (0-indexed): ``lr`` before ``start`` or when ``cycle == 1``."""
    if round < start or cycle <= 1:
        return lr
    s = ((round % cycle) + 1) / cycle
    return (1 - s) * lr + s * swa_lr


def starts_swa_model(round: int, *, start: int, collect: str) -> bool:
    """Whether the SWA model is initialised as a copy of the global model before round ``round`` trains."""
    return collect == "reference" and round == start


def collects(round: int, *, start: int, cycle: int, collect: str) -> bool:
    """Whether the global model after round ``round`` is averaged into the SWA model.

    Raises:
        ConfigError: ``collect`` is not one of :data:`fedtrain.config.SWA_COLLECT_MODES`.
    """
    if collect == "end":
        return round >= start and round % cycle == cycle - 1
    if collect == "reference":
        return round > start and (round - start) % cycle == 0
    raise ConfigError(f"collect must be one of {', '.join(SWA_COLLECT_MODES)}, got {collect!r}.")


def swa_average(
    swa_params: Mapping[str, torch.Tensor] | None, count: int, params: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], int]:
    """Running mean :math:`w_{SWA} \\leftarrow \\frac{n}{n+1} w_{SWA} + \\frac{1}{n+1} w` (computed in float64).

    Integer entries are counters and are copied from ``params``.

    Returns:
        The new SWA state dict and ``count + 1``.
    """
    out: dict[str, torch.Tensor] = {}
    for name, value in params.items():
        if swa_params is None or count == 0 or not value.is_floating_point():
            out[name] = value.clone()
            continue
        mean = swa_params[name].to(torch.float64) * (count / (count + 1)) + value.to(torch.float64) / (count + 1)
        out[name] = mean.to(value.dtype)
    return out, count + 1
