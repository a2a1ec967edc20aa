"""Federated methods as plugins: the :class:`Method` extension point, the built-ins and the name/import-path registry."""

from __future__ import annotations

from fedtrain.methods.base import ClientContext, Method, MethodState, NoSettings, ServerContext, fedopt_step
from fedtrain.methods.registry import BUILTIN_METHODS, check_method, load_method, method_class

__all__ = [
    "Method",
    "MethodState",
    "NoSettings",
    "ClientContext",
    "ServerContext",
    "fedopt_step",
    "BUILTIN_METHODS",
    "method_class",
    "load_method",
    "check_method",
]
