"""Output paths built from user-supplied names (checkpoint labels, split names): one safe name each, always inside the output folder."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from fedtrain.errors import ConfigError

__all__ = ["safe_name", "inside", "unique_names"]

_UNSAFE = re.compile(r"[^\w.+-]")  # separators, spaces, control and undecodable (surrogate-escaped) bytes


def safe_name(name: str) -> str:
    """``name`` as one harmless path component: separators and odd characters become ``_``, leading dots too.

    ``"../x"`` -> ``"___x"``, ``".."`` -> ``"__"``, ``"a/b"`` -> ``"a_b"``, ``""`` -> ``"_"``; letters, digits,
    ``. _ + -`` inside a name are kept, so an ordinary label is its own folder name.
    """
    cleaned = _UNSAFE.sub("_", name)
    cleaned = re.sub(r"^\.+", lambda dots: "_" * len(dots.group()), cleaned)
    return cleaned or "_"


def unique_names(names: Sequence[str]) -> list[str]:
    """:func:`safe_name` of each name, with ``-2``, ``-3``... where two would otherwise share a folder."""
    out: list[str] = []
    for name in names:
        candidate, count = safe_name(name), 1
        while candidate in out:
            count += 1
            candidate = f"{safe_name(name)}-{count}"
        out.append(candidate)
    return out


def inside(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root/part/...``, refusing any result that does not lie inside ``root`` (symbolic links followed).

    Raises:
        ConfigError: the path would leave ``root`` (parts not made safe with :func:`safe_name`, or a link out).
    """
    base = Path(root)
    path = base.joinpath(*parts)
    resolved_root = base.resolve()
    if path.resolve() != resolved_root and resolved_root not in path.resolve().parents:
        raise ConfigError(f"The output path {path} would lie outside the output folder {base}. Use names without "
                          "'..' or '/' (or a folder that is not a link out of the output folder).")
    return path
