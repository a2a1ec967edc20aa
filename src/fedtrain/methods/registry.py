"""The name -> method mapping: the built-in methods by name, a user's method by import path (``pkg.mod:Attr``)."""

from __future__ import annotations

import dataclasses

from fedtrain.config import ALGORITHMS, TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.methods.base import Method
from fedtrain.methods.fedavg import FedASAM, FedAvg, FedSAM
from fedtrain.methods.fedgamma import FedGAMMA
from fedtrain.methods.fedgloss import FedGloSS
from fedtrain.methods.fedlesam import FedLESAM
from fedtrain.methods.fedspeed import FedSpeed
from fedtrain.methods.mofedsam import MoFedSAM
from fedtrain.plugins import is_import_path, resolve

__all__ = ["BUILTIN_METHODS", "method_class", "load_method", "check_method"]

# Every name of fedtrain.config.ALGORITHMS (the torch-free choice list) and nothing else: tests/fedtrain/methods checks it.
BUILTIN_METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (FedAvg, FedSAM, FedASAM, MoFedSAM, FedGAMMA, FedLESAM, FedGloSS, FedSpeed)
}


def method_class(algorithm: str) -> type[Method]:
    """The method class ``algorithm`` names: a built-in name, or ``package.module:Class`` (:func:`fedtrain.plugins.resolve`).

    Raises:
        ConfigError: an unknown name, an import path that cannot be imported, or an object that is not a
            subclass of :class:`~fedtrain.methods.base.Method`.
    """
    if not is_import_path(algorithm):
        if algorithm not in BUILTIN_METHODS:
            raise ConfigError(f"Unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}, "
                              "or name your own method as package.module:Class.")
        return BUILTIN_METHODS[algorithm]
    found = resolve(algorithm, what="federated method", option="--algorithm")
    if not (isinstance(found, type) and issubclass(found, Method)):
        raise ConfigError(
            f"--algorithm {algorithm!r} names {found!r}, not a federated method: it must be a class deriving from "
            "fedtrain.methods.Method (see the README, 'Bring your own method')."
        )
    if not dataclasses.is_dataclass(found.Settings):
        raise ConfigError(f"--algorithm {algorithm!r}: its Settings must be a dataclass of the method's settings "
                          f"(@dataclass(frozen=True) class Settings: ...), got {found.Settings!r}.")
    return found


def check_method(config: TrainConfig) -> Method:
    """:func:`load_method`, and ``--cohort vmap`` refused for a method the vectorised cohort cannot train: before a run touches its folder.

    Raises:
        ConfigError: as :func:`load_method`, or ``vmap`` asked for a method without it.
    """
    method = load_method(config)
    if config.cohort == "vmap" and (why := method.vmap_refusal()) is not None:
        raise ConfigError(f"--cohort vmap cannot train this run: {why}. Use --cohort sequential (or auto).")
    return method


def load_method(config: TrainConfig) -> Method:
    """The run's method: :func:`method_class` of ``config.algorithm`` with its settings from ``config.method_args``.

    Raises:
        ConfigError: as :func:`method_class`, or a setting the method does not have or of the wrong type.
    """
    return method_class(config.algorithm).from_args(config.method_args)
