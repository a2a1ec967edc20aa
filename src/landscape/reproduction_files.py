"""Reading a reproduction folder's ``plan.json`` and ``reproduce.json`` as untrusted input (for ``reproduce`` and ``info``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fedtrain.io import read_json
from fedtrain.validate import UntrustedFile, integer, list_of, mapping_rule, text

__all__ = ["read_plan", "read_history"]

_FIX = "Use another --out, or delete the damaged file (the finished runs and analyses in the folder are kept and reused)."


def read_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved ``plan.json``: an object with the preset name, the number of seeds and the settings.

    Raises:
        DataFormatError: unreadable (see :func:`fedtrain.io.read_json`), or of another shape.
    """
    file = UntrustedFile(Path(path), "reproduction plan (plan.json)", _FIX)
    saved = file.mapping(read_json(path, kind=file.kind, fix=_FIX))
    file.field(saved, "preset", text())
    file.field(saved, "seeds", integer(1))
    file.field(saved, "settings", mapping_rule())
    return saved


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The invocations recorded in ``reproduce.json`` (none when it lists none).

    Raises:
        DataFormatError: unreadable, or of another shape.
    """
    file = UntrustedFile(Path(path), "reproduction record (reproduce.json)", _FIX)
    record = file.mapping(read_json(path, kind=file.kind, fix=_FIX))
    return list(file.field(record, "invocations", list_of(mapping_rule()), default=[]))
