"""The one resolver of user code named on the command line: ``package.module:attribute`` -> the object."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from fedtrain.errors import ConfigError

__all__ = ["is_import_path", "resolve"]


def is_import_path(spec: str) -> bool:
    """Whether ``spec`` names user code (``package.module:attribute``) rather than a built-in name."""
    return ":" in spec


def resolve(spec: str, *, what: str = "object", option: str | None = None) -> Any:
    """The object ``spec = "package.module:attribute"`` names (``attribute`` may be dotted: ``module:Class.build``).

    The module is imported as Python would from the current directory (``python -m`` semantics: the working
    directory is searched after ``sys.path``, so a file ``./mymodels.py`` is found as ``mymodels``), or from
    ``PYTHONPATH``.

    Args:
        spec: ``"package.module:attribute"``.
        what: what the object is for, in the error message (``"model factory"``, ``"data loader"``).
        option: the command-line option that gave ``spec``, in the error message.

    Returns:
        The attribute.

    Raises:
        ConfigError: ``spec`` is malformed, the module cannot be found or fails to import, or it lacks the attribute.
    """
    where = f"{option} {spec!r}" if option else repr(spec)
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute or not all(part.isidentifier() for part in module_name.split(".") + attribute.split(".")):
        raise ConfigError(f"{where} is not an import path: write the {what} as package.module:name, e.g. mymodels:make_net.")
    module = _import(module_name, where, what)
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ConfigError(
                f"{where}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no attribute {attribute!r}. "
                f"Check the name of the {what} in that file."
            )
        value = getattr(value, part)
    return value


def _import(module_name: str, where: str, what: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # A console script does not search the working directory; ``python -m`` and a user's own scripts do.
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ConfigError(
                f"{where}: no module named {err.name!r} was found (searched the working directory {cwd} and "
                f"PYTHONPATH). Run from the folder that holds it, or add that folder to PYTHONPATH, so that the "
                f"{what} can be imported."
            ) from None
        raise ConfigError(f"{where}: importing {module_name!r} failed: {err}. Install what it needs.") from None
    except Exception as err:  # noqa: BLE001 - the user's module may raise anything while it is imported
        raise ConfigError(
            f"{where}: importing {module_name!r} failed ({type(err).__name__}: {err}). Fix the module (run "
            f"`python -c 'import {module_name}'` to see the traceback)."
        ) from None
