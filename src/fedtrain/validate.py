"""Untrusted files: the size bounds, bounded reading (bytes, JSON, JSON lines, YAML, npz members) and the field checks every reader uses.

Every file the toolkit reads (checkpoints, a run's JSON files, partitions, surface records, Hessian
reports, reproduction plans, config files) goes through this module before any of its content is used:

* its size is bounded *before* it is read or allocated (:data:`MAX_JSON_BYTES`, :data:`MAX_CONFIG_BYTES`,
  :data:`MAX_CHECKPOINT_BYTES`, :data:`MAX_NPZ_MEMBER_BYTES` from the npy header of each member, and
  :data:`MAX_MODEL_VALUES` from a checkpoint's declared model, built on PyTorch's ``meta`` device);
* text must be UTF-8, JSON strict (no ``NaN``/``Infinity``, which the toolkit never writes), YAML free of
  anchors and aliases (a 1 KB "billion laughs" file would otherwise expand exponentially);
* its shape is checked field by field with :class:`UntrustedFile` and :class:`Rule`, so the error names the
  file, the field, what was found and what was expected.

A failure raises the file kind's error (:class:`fedtrain.errors.DataFormatError` by default) as one
paragraph: the file, what is wrong, how to fix it. This module is torch-free at import time
(:mod:`fedtrain.config` uses it); torch and numpy are imported only by the functions that need them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from fedtrain.errors import DataFormatError, LandscapeError

__all__ = [
    "MAX_MODEL_VALUES",
    "MAX_CHECKPOINT_BYTES",
    "MAX_JSON_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_NPZ_MEMBER_BYTES",
    "MAX_NPZ_MEMBERS",
    "shown_value",
    "Rule",
    "UntrustedFile",
    "integer",
    "number",
    "text",
    "anything",
    "optional",
    "list_of",
    "mapping_rule",
    "read_bytes",
    "read_text",
    "parse_json",
    "parse_json_lines",
    "parse_yaml",
    "npz_arrays",
]

# The largest model a checkpoint may declare: 100 million values in its state dict (400 MB in float32;
# ResNet-18 has 11 million, the paper's CNN 0.8 million). Checked on the meta device, before any allocation.
MAX_MODEL_VALUES = 100_000_000
# A checkpoint holds the weights, the SWA mean and the server momentum (3 copies, float32) plus small
# records; anything beyond 16 bytes per allowed value is not one of ours.
MAX_CHECKPOINT_BYTES = 16 * MAX_MODEL_VALUES
# run JSON files, metrics lines, partitions (CIFAR's 60,000 indices take ~0.5 MB), Hessian reports, plans
MAX_JSON_BYTES = 64 * 2**20
# a config file of training settings is a few hundred bytes
MAX_CONFIG_BYTES = 2**20
# one array of a surface.npz: 128 MiB is 16.7 million float64 values, a 4,096 x 4,096 grid
MAX_NPZ_MEMBER_BYTES = 128 * 2**20
# a surface holds at most 2 coordinates, 2 splits x 2 quantities x (mean, stderr), done and metadata
MAX_NPZ_MEMBERS = 64
_MAX_NPY_HEADER = 10_000  # numpy's own default bound on an npy header


def shown_value(value: object, width: int = 60) -> str:
    """``repr(value)`` for a message, cut to ``width`` characters; a huge integer (whose repr Python refuses) by its size."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    shown = repr(value)
    return shown if len(shown) <= width else shown[: width - 3] + "..."


@dataclass(frozen=True)
class Rule:
    """A check of one value: ``words`` says what is expected ("an integer >= 0"), ``test`` decides."""

    words: str
    test: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        return self.test(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int | None = None, high: int | None = None) -> Rule:
    """An int (not a bool) in ``[low, high]``."""
    bounds = " and ".join(b for b in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if b)
    return Rule(f"an integer{' ' + bounds if bounds else ''}",
                lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high))


def number(*, low: float | None = None, finite: bool = True) -> Rule:
    """An int or float (not a bool), finite unless ``finite=False``, ``>= low`` when given."""
    words = f"a {'finite ' if finite else ''}number{f' >= {low}' if low is not None else ''}"
    return Rule(words, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                and (not finite or math.isfinite(v)) and (low is None or v >= low))


def text(choices: Sequence[str] | None = None) -> Rule:
    """A string, one of ``choices`` when given."""
    words = "a string" if choices is None else f"one of {', '.join(map(repr, choices))}"
    return Rule(words, lambda v: isinstance(v, str) and (choices is None or v in choices))


anything = Rule("any value", lambda v: True)


def optional(rule: Rule) -> Rule:
    """``rule`` or null."""
    return Rule(f"{rule.words} or null", lambda v: v is None or rule(v))


def list_of(rule: Rule, length: int | None = None) -> Rule:
    """A list (JSON array) whose items follow ``rule``; exactly ``length`` items when given."""
    words = f"a list of {'' if length is None else f'{length} '}items, each {rule.words}"
    return Rule(words, lambda v: isinstance(v, (list, tuple)) and (length is None or len(v) == length) and all(map(rule, v)))


def mapping_rule(values: Rule = anything) -> Rule:
    """A mapping with string keys whose values follow ``values``."""
    words = "a mapping" + ("" if values is anything else f" of {values.words}")
    return Rule(words, lambda v: isinstance(v, Mapping) and all(isinstance(k, str) and values(x) for k, x in v.items()))


@dataclass(frozen=True)
class UntrustedFile:
    """A file being read: what it is, how to fix it, and which error a problem raises.

    Attributes:
        path: the file.
        kind: what the file should be, in words ("checkpoint", "run summary (summary.json)").
        fix: the sentence that tells the user how to get a good file.
        error: the toolkit's error class raised on a problem.
    """

    path: Path
    kind: str
    fix: str
    error: type[LandscapeError] = DataFormatError

    def fail(self, problem: str) -> NoReturn:
        """Raise ``error``: one paragraph naming the file, ``problem`` and the fix.

        Raises:
            LandscapeError: always (the file's ``error`` class).
        """
        raise self.error(f"{self.path} is not a usable {self.kind}: {problem}. {self.fix}")

    def mapping(self, value: Any, where: str = "its content") -> dict[str, Any]:
        """``value`` as a dict, which it must be (with string keys).

        Raises:
            LandscapeError: ``value`` is not a mapping with string keys.
        """
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            self.fail(f"{where} must be a mapping (a JSON object), got {type(value).__name__}")
        return dict(value)

    def field(self, values: Mapping[str, Any], key: str, rule: Rule = anything, where: str = "", *,
              default: Any = dataclasses.MISSING) -> Any:
        """``values[key]``, which must follow ``rule``; a missing key gives ``default`` or fails.

        Raises:
            LandscapeError: the key is missing (without a default) or its value breaks ``rule``.
        """
        if key not in values:
            if default is dataclasses.MISSING:
                self.fail(f"{where or 'it'} lacks the entry {key!r}")
            return default
        value = values[key]
        if not rule(value):
            self.fail(f"{where}{key!r} must be {rule.words}, got {shown_value(value)}")
        return value


def read_bytes(file: UntrustedFile, limit: int) -> bytes:
    """The bytes of ``file``, refused beyond ``limit`` bytes before reading.

    Raises:
        LandscapeError: missing file, a directory, too large, or unreadable.
    """
    path = file.path
    if not path.is_file():
        file.fail("the file does not exist" if not path.exists() else "it is not a regular file")
    size = path.stat().st_size
    if size > limit:
        file.fail(f"it has {size:,} bytes, more than the {limit:,} such a file may have")
    try:
        return path.read_bytes()
    except OSError as err:
        file.fail(f"it could not be read ({err.strerror or err})")


def read_text(file: UntrustedFile, limit: int) -> str:
    """The UTF-8 text of ``file`` (at most ``limit`` bytes).

    Raises:
        LandscapeError: as :func:`read_bytes`, or the bytes are not UTF-8 (a binary file).
    """
    raw = read_bytes(file, limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        file.fail(f"it is not UTF-8 text (byte {err.start} is {raw[err.start:err.start + 1]!r}); it is binary or damaged")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON (the toolkit writes null for a non-finite number)")


def _loads(file: UntrustedFile, content: str, where: str) -> Any:
    try:
        return json.loads(content, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as err:
        file.fail(f"{where} is not valid JSON ({str(err) or type(err).__name__})"[:300])


def parse_json(file: UntrustedFile, limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON value of ``file`` (strict: no NaN or Infinity), at most ``limit`` bytes.

    Raises:
        LandscapeError: as :func:`read_text`, an empty file, or invalid JSON.
    """
    content = read_text(file, limit)
    if not content.strip():
        file.fail("the file is empty")
    return _loads(file, content, "its content")


def parse_json_lines(file: UntrustedFile, limit: int = MAX_JSON_BYTES) -> list[Any]:
    """The JSON values of the non-blank lines of ``file`` (a ``.jsonl`` file).

    Raises:
        LandscapeError: as :func:`read_text`, or a line that is not valid JSON (its number is named).
    """
    return [_loads(file, line, f"line {n}") for n, line in enumerate(read_text(file, limit).splitlines(), 1) if line.strip()]


def parse_yaml(file: UntrustedFile, content: str) -> Any:
    """The YAML document ``content`` of ``file``: plain values only (safe loader), no anchors or aliases.

    Anchors and aliases (``&name``/``*name``) are refused at the first one: nested aliases expand
    exponentially (a 1 KB file can describe 10^9 values), and a settings file never needs them.

    Raises:
        LandscapeError: anchors or aliases, a tag of a Python object, or invalid YAML.
    """
    import yaml

    class _NoAliases(Exception):
        pass

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _NoAliases(f"line {event.start_mark.line + 1}")
            return super().compose_node(parent, index)

    loader = NoAliasLoader(content)
    try:
        return loader.get_single_data()
    except _NoAliases as err:
        file.fail(f"it uses a YAML anchor or alias (&name / *name, at {err}), which config files may not use (nested "
                  "aliases expand exponentially); write each value out")
    except (yaml.YAMLError, RecursionError, ValueError) as err:
        file.fail(f"it could not be parsed as YAML ({' '.join(str(err).split())[:200]})")
    finally:
        loader.dispose()


def npz_arrays(file: UntrustedFile, *, member_limit: int = MAX_NPZ_MEMBER_BYTES, max_members: int = MAX_NPZ_MEMBERS) -> dict[str, Any]:
    """The arrays of an ``.npz`` file, each member's declared size checked against ``member_limit`` before loading.

    Each member's npy header (dtype and shape) is read from the zip archive with
    :mod:`numpy.lib.format` first; object arrays (pickles) are refused, and the arrays are then loaded
    with ``allow_pickle=False``.

    Raises:
        LandscapeError: not a zip/npz archive, too many members, a member that is not an npy array, an
            object array, a declared size beyond ``member_limit``, or a damaged member.
    """
    import zipfile

    from numpy.lib import format as npy

    if not file.path.is_file():
        file.fail("the file does not exist" if not file.path.exists() else "it is not a regular file")
    try:
        archive = zipfile.ZipFile(file.path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        file.fail(f"it could not be read as an .npz (zip) archive ({err}); it is truncated or of another format")
    arrays: dict[str, Any] = {}
    with archive:
        members = archive.infolist()
        if len(members) > max_members:
            file.fail(f"it has {len(members)} members, more than the {max_members} such a file may have")
        for info in members:
            name = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy"):
                file.fail(f"its member {info.filename!r} is not an .npy array")
            try:
                with archive.open(info) as handle:
                    version = npy.read_magic(handle)
                    if version not in ((1, 0), (2, 0)):
                        file.fail(f"its array {name!r} has npy format version {version}, not 1.0 or 2.0")
                    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                    shape, _, dtype = read_header(handle, max_header_size=_MAX_NPY_HEADER)
                if dtype.hasobject:
                    file.fail(f"its array {name!r} holds Python objects (a pickle), which are never loaded")
                declared = math.prod(shape) * dtype.itemsize
                if declared > member_limit:
                    file.fail(f"its array {name!r} declares shape {shown_value(shape)} of {dtype} ({declared:,} bytes), more "
                              f"than the {member_limit:,} bytes one array may have")
                with archive.open(info) as handle:
                    arrays[name] = npy.read_array(handle, allow_pickle=False, max_header_size=_MAX_NPY_HEADER)
            except LandscapeError:
                raise
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as err:
                file.fail(f"its array {name!r} is damaged ({type(err).__name__}: {' '.join(str(err).split())[:150]})")
    return arrays
