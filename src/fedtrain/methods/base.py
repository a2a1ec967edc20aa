"""The extension point of federated methods: a client update and a server step over explicit, checkpointed state.

A *method* is what distinguishes FedAvg, FedSAM, MoFedSAM, FedGAMMA, ... from one another inside the one
federated loop (:func:`fedtrain.round.federated_round`); everything else (client sampling, learning-rate
schedule, SWA, evaluation, observers, checkpoints, resume, every analysis) is the loop's and works for any
method unchanged. A method is a small object with

* ``name`` and ``Settings``: its typed hyper-parameters, a frozen dataclass of JSON-able values, built from
  ``TrainConfig.method_args`` (``--method-arg key=value`` or a config file's ``method_args:``) and recorded
  in ``config.json`` and every checkpoint;
* :meth:`Method.client_update`: what a sampled client does with the global weights and its shard, given its
  own persistent *client state* (a dict of tensors and numbers, ``{}`` the first time the client is sampled);
  it returns its :class:`~fedtrain.client.ClientUpdate` (the weight change, anything else it sends in
  ``extras``) and its new client state;
* :meth:`Method.server_step`: how the server turns the round's updates into the new global weights, given
  its own persistent *server state* (a dict of tensors and numbers, ``{}`` before the first round); the
  clients see that state read-only (``ClientContext.server_state``, what the server broadcasts).

Both states are saved in every checkpoint (``weights_only=True`` safe: tensors, numbers, strings, nested
dicts), so a resumed run is bit-identical. The defaults are FedAvg's: local training with the round's
:class:`~fedtrain.client.ClientConfig` and no client state; the sample-weighted mean delta and the FedOpt
server step (``--server-lr``, ``--server-momentum``, the buffer kept in the server state's
``server_momentum``). A method overrides only what differs.

Example: a server step of one's own, with a typed setting and a server state (a client update of one's own,
FedProx, is ``examples/fedprox.py``, shown in the README's "Bring your own method"); train it with
``landscape train --algorithm mymodule:DampedFedAvg --method-arg scale=0.5``:

>>> from dataclasses import dataclass
>>> from fedtrain.aggregation import aggregate
>>> from fedtrain.methods import Method
>>> class DampedFedAvg(Method):
...     name = "damped-fedavg"
...     @dataclass(frozen=True)
...     class Settings:
...         scale: float = 1.0
...     def server_step(self, global_params, updates, server_state, ctx):
...         mean = aggregate(updates)  # w <- w + scale * mean delta (integer buffers copied as FedAvg does)
...         params = {k: w + self.settings.scale * mean[k] if w.is_floating_point() else w + mean[k]
...                   for k, w in global_params.items()}
...         return params, {"rounds": server_state.get("rounds", 0) + 1}
>>> method = DampedFedAvg.from_args({"scale": "0.5"})  # the value of --method-arg scale=0.5, typed
>>> method.settings
DampedFedAvg.Settings(scale=0.5)
>>> import torch
>>> from fedtrain.client import ClientUpdate
>>> method.server_step({"w": torch.zeros(2)}, [ClientUpdate(delta={"w": torch.ones(2)}, num_examples=3)], {}, ctx=None)
({'w': tensor([0.5000, 0.5000])}, {'rounds': 1})
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from fedtrain.aggregation import aggregate
from fedtrain.client import ClientConfig, ClientShard, ClientUpdate, client_update
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.server import ServerState, server_update

__all__ = ["MethodState", "ClientContext", "ServerContext", "NoSettings", "Method", "fedopt_step"]

# A client's or the server's persistent state: tensors, numbers, strings and nested dicts of them (what
# torch.load(weights_only=True) reads back). Tensors lie on the run's device while training.
MethodState = dict[str, Any]


@dataclass(frozen=True)
class ClientContext:
    """What a sampled client knows in a round besides the global weights, its shard and its own state.

    Attributes:
        round: the round (0-indexed).
        client: the client's id.
        config: the round's local optimiser (learning rate, epochs, batch size, weight decay, SAM radius...).
        generator: the client's generator for this round (data order, augmentation); draw nothing else from
            the global RNG, so the run stays reproducible.
        worker: a scratch module of the run's architecture on the shard's device; the client may overwrite
            and train it (:func:`fedtrain.client.client_update` does), never keep it.
        server_state: the method's server state before the round (read-only: what the server broadcasts).
    """

    round: int
    client: int
    config: ClientConfig
    generator: torch.Generator
    worker: nn.Module
    server_state: Mapping[str, Any]


@dataclass(frozen=True)
class ServerContext:
    """What the server knows in a round besides the global weights, the updates and its own state.

    Attributes:
        round: the round (0-indexed).
        lr: the clients' learning rate in this round.
        clients: the clients that trained, in the order of the updates.
        config: the run's settings (``server_lr``, ``server_momentum``, ``num_clients``, ``local_epochs``...).
    """

    round: int
    lr: float
    clients: tuple[int, ...]
    config: TrainConfig


@dataclass(frozen=True)
class NoSettings:
    """The settings of a method without hyper-parameters of its own."""


class Method:
    """Base class of federated methods: FedAvg's client update and server step, to be overridden (see the module docstring).

    Class attributes:
        name: the method's name (recorded in results).
        Settings: a frozen dataclass of its hyper-parameters (defaults for all of them).
        supports_vmap: whether the vectorised cohort (``--cohort vmap``, :mod:`fedtrain.cohort`) trains
            the method's clients exactly as :meth:`client_update` would; only the built-ins FedAvg, FedSAM and
            FedASAM, whose local optimiser it implements. Otherwise ``--cohort auto`` runs the clients one
            after another and ``--cohort vmap`` is refused.
    """

    name: ClassVar[str] = "method"
    Settings: ClassVar[type] = NoSettings
    supports_vmap: ClassVar[bool] = False

    def __init__(self, settings: Any = None) -> None:
        self.settings = self.Settings() if settings is None else settings

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Method:
        """The method with settings built from ``args`` (values may be strings, ``--method-arg mu=0.1``).

        Raises:
            ConfigError: an unknown key, or a value that is not of the setting's type.
        """
        return cls(settings_from_args(cls.Settings, args, cls.name))

    @classmethod
    def uses_default_steps(cls) -> bool:
        """Whether the method keeps FedAvg's client update and server step (FedAvg, FedSAM, FedASAM: only the local optimiser differs)."""
        return cls.client_update is Method.client_update and cls.server_step is Method.server_step

    def vmap_refusal(self) -> str | None:
        """Why ``--cohort vmap`` cannot train this method's clients, or ``None`` when it can (:attr:`supports_vmap`)."""
        if self.supports_vmap:
            return None
        return (f"method {self.name!r} has a client update of its own, which the vectorised cohort does not implement "
                "(only fedavg, fedsam and fedasam run vectorised)")

    def settings_record(self) -> dict[str, Any]:
        """The settings as a plain dict (what results record)."""
        return dataclasses.asdict(self.settings)

    def client_update(
        self, global_params: Mapping[str, torch.Tensor], shard: ClientShard, client_state: MethodState, ctx: ClientContext
    ) -> tuple[ClientUpdate, MethodState]:
        """Train one client from the global weights: FedAvg's local epochs of ``ctx.config``'s optimiser, no state.

        Args:
            global_params: the global model's state dict (not modified), on the shard's device.
            shard: the client's data.
            client_state: the client's state from the last round it trained (``{}`` the first time); not modified.
            ctx: the round's context for this client.

        Returns:
            The client's update and its new state.
        """
        return client_update(ctx.worker, global_params, shard, ctx.config, ctx.generator), client_state

    def server_step(
        self, global_params: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate], server_state: MethodState,
        ctx: ServerContext,
    ) -> tuple[dict[str, torch.Tensor], MethodState]:
        """The new global weights: the sample-weighted mean delta through the FedOpt server step (:func:`fedopt_step`).

        Args:
            global_params: the global weights before the round (not modified).
            updates: the clients' updates, in ``ctx.clients``' order.
            server_state: the server state before the round (not modified).
            ctx: the round's context.

        Returns:
            The new global weights and the new server state.
        """
        return fedopt_step(global_params, aggregate(updates), server_state, ctx.config)


def fedopt_step(
    global_params: Mapping[str, torch.Tensor], mean_delta: Mapping[str, torch.Tensor], server_state: MethodState,
    config: TrainConfig,
) -> tuple[dict[str, torch.Tensor], MethodState]:
    """:func:`fedtrain.server.server_update` (``w <- w - eta_s m``, ``m <- beta m - mean delta``) with its buffer in ``server_state["server_momentum"]``.

    Returns:
        The new weights, and ``server_state`` with the new momentum buffer (the key absent without momentum).
    """
    momentum = server_state.get("server_momentum")
    new = server_update(ServerState(round=0, params=dict(global_params), momentum=momentum), mean_delta,
                        server_lr=config.server_lr, server_momentum=config.server_momentum)
    rest = {k: v for k, v in server_state.items() if k != "server_momentum"}
    return new.params, rest if new.momentum is None else {**rest, "server_momentum": new.momentum}


def settings_from_args(settings_type: type, args: Mapping[str, Any], method: str) -> Any:
    """An instance of the frozen dataclass ``settings_type`` from ``args``, string values parsed to each field's type.

    Raises:
        ConfigError: an unknown key, or a value that does not fit its field's type.
    """
    fields = {f.name: f for f in dataclasses.fields(settings_type)}
    unknown = sorted(set(args) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise ConfigError(f"method {method!r} has no setting(s) {', '.join(unknown)} (--method-arg); its settings: {known}.")
    values = {}
    for key, raw in args.items():
        values[key] = _typed(raw, fields[key], method)
    return settings_type(**values)


_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


def _typed(raw: Any, f: dataclasses.Field, method: str) -> Any:
    """``raw`` as the field's declared type (``float``, ``int``, ``bool`` or ``str``); strings are parsed."""
    kind = _TYPES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""), None)
    if kind is None:
        return raw
    fail = ConfigError(f"method {method!r} setting {f.name} (--method-arg {f.name}=...) must be a {kind.__name__}, got {raw!r}.")
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0", "yes", "no"):
            return raw.lower() in ("true", "1", "yes")
        raise fail
    if kind is str:
        return str(raw)
    if isinstance(raw, bool) or (kind is int and isinstance(raw, float) and not raw.is_integer()):
        raise fail  # int(2.5) would silently truncate; True is an int to Python, never a setting's number
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise fail from None
    if kind is float and not math.isfinite(value):
        raise fail
    return value
