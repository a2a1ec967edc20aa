"""Atomic file output: every file the toolkit writes goes through a temporary file and a rename."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedtrain.errors import DataFormatError, LandscapeError, OutputError
from fedtrain.validate import MAX_JSON_BYTES, UntrustedFile, parse_json, parse_json_lines

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_error", "to_plain", "to_json", "json_roundtrip", "write_json", "read_json",
           "read_json_lines"]

_FIX = "Recreate it with the landscape command that wrote it, or remove it."


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    A crash at any moment leaves either the old file or the new one, never a half-written file.

    Raises:
        OutputError: the operating system refused the write (no space, permission, a path below a regular
            file, a folder in the way); the message names the path and says what was kept.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(target, err) from None
    try:
        # mkstemp creates the file private (0600); give it the permissions of an ordinary new file.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(target, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_error(target: str | os.PathLike[str], err: OSError, *, folder: bool = False) -> OutputError:
    """The one-paragraph error for a refused write of ``target`` (a file, or a ``folder``): the path, the cause, what was kept, what to do."""
    target = Path(target)
    blocking = next((p for p in ((target,) if folder else ()) + (target.parent, *target.parent.parents)
                     if p.exists() and not p.is_dir()), None)
    reason = err.strerror or str(err) or type(err).__name__
    if blocking is not None:
        cause = f"{blocking} is a regular file, not a folder, so nothing can be written below it"
    elif target.is_dir() and not folder:
        cause = "a folder of that name is in the way"
    else:
        cause = {errno.ENOSPC: f"no space left on the device ({reason})", errno.EDQUOT: f"the disk quota is exhausted ({reason})",
                 errno.EACCES: f"permission denied ({reason})", errno.EROFS: f"the filesystem is read-only ({reason})"}.get(err.errno, reason)
    kept = "the previous file there is kept intact" if target.is_file() and not folder else "nothing was written there"
    return OutputError(
        f"Cannot write {target}: {cause}; {kept}, and every file written before is complete "
        "(each is written to a temporary file and renamed). Free space, fix the permissions or choose another "
        "output path, then run the command again (--resume continues a run or a surface where it stopped)."
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def to_plain(value: Any) -> Any:
    """``value`` as JSON-like data: lists for arrays, tensors and tuples, ``None`` for NaN and infinities, strings for keys and paths."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def to_json(obj: Any) -> str:
    """Strict JSON text: arrays and tensors as lists, NaN and infinities as null, paths as strings."""
    return json.dumps(to_plain(obj), indent=2, allow_nan=False)


def json_roundtrip(obj: Any) -> Any:
    """``obj`` as it reads back from a JSON file written by :func:`write_json` (tuples become lists...)."""
    return json.loads(to_json(obj))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as strict JSON, atomically."""
    atomic_write_text(path, to_json(obj) + "\n")


def read_json(
    path: str | os.PathLike[str], *, kind: str = "JSON file", fix: str = _FIX, error: type[LandscapeError] = DataFormatError,
    limit: int = MAX_JSON_BYTES,
) -> Any:
    """Read a JSON file written by :func:`write_json`, as untrusted input (:mod:`fedtrain.validate`).

    Args:
        path: the file.
        kind: what the file is, for the error message ("run summary (summary.json)").
        fix: how the user gets a good file, for the error message.
        error: the error class raised.
        limit: the largest size accepted, in bytes, checked before reading.

    Raises:
        LandscapeError: ``error`` for a missing, oversized, binary (non-UTF-8), empty or invalid JSON file.
    """
    return parse_json(UntrustedFile(Path(path), kind, fix, error), limit)


def read_json_lines(
    path: str | os.PathLike[str], *, kind: str = "JSON-lines file", fix: str = _FIX, error: type[LandscapeError] = DataFormatError,
) -> list[Any]:
    """The values of the non-blank lines of a ``.jsonl`` file (e.g. ``metrics.jsonl``), as untrusted input.

    Raises:
        LandscapeError: ``error`` for a missing, oversized or binary file, or a line that is not JSON (named).
    """
    return parse_json_lines(UntrustedFile(Path(path), kind, fix, error))

