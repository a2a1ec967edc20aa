"""Reading a training run's records (``config.json``, ``summary.json``, ``metrics.jsonl``, a checkpoint's metrics) as untrusted input.

:mod:`fedtrain.run` writes these files; every command that reads them back (``train --resume``,
``figures``, ``reproduce``) reads them here, so each is checked once, against one schema, before use:
its size and encoding (:mod:`fedtrain.validate`), its top level (an object, a list of objects), and
the type and range of every entry a reader uses. A problem raises one paragraph naming the file, the
entry and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError, DataFormatError, LandscapeError
from fedtrain.io import read_json, read_json_lines
from fedtrain.validate import (
    Rule,
    UntrustedFile,
    integer,
    list_of,
    mapping_rule,
    number,
    optional,
    text,
)

__all__ = ["METRICS_LINE", "SUMMARY", "read_run_config", "config_from_record", "read_summary", "read_metrics", "check_metrics"]

_FIX = ("The run's files are damaged or were not written by `landscape train`: rerun that run (or restore its folder), "
        "or leave it out.")
_FRACTION = Rule("a number between 0 and 1", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1)

# One evaluation of a run (fedtrain.run writes it): the entries that summaries and figures use.
METRICS_LINE: dict[str, Rule] = {
    "round": integer(0),
    "test_accuracy": _FRACTION,
    "test_loss": optional(number(low=0)),
    "model": text(("global", "swa")),
    "swa_count": integer(0),
}
# The entries of summary.json that tables and figures use (others are descriptive).
SUMMARY: dict[str, Rule] = {
    "rounds": integer(1),
    "final_accuracy": optional(_FRACTION),
    "last_k": integer(0),
    "last_k_mean_accuracy": optional(_FRACTION),
    "best_accuracy": optional(_FRACTION),
}


def config_from_record(values: Any, file: UntrustedFile) -> TrainConfig:
    """The :class:`TrainConfig` a record holds (a ``config.json``, a checkpoint's ``config``).

    Raises:
        LandscapeError: ``file``'s error: not a mapping, or a setting :class:`TrainConfig` refuses (a value of
            the wrong type or out of range, an unknown key: its message, with the file named).
    """
    values = file.mapping(values, "its training configuration")
    # A record from before the cohort setting was trained one client after another: it resumes that way
    # (the default, auto, would vectorise it on a GPU and change its numbers silently).
    values = {"cohort": "sequential", **values}
    try:
        return TrainConfig.from_dict(values)
    except ConfigError as err:
        file.fail(f"its training configuration is refused: {err}")


def read_run_config(path: str | os.PathLike[str], *, error: type[LandscapeError] = ConfigError) -> TrainConfig:
    """A run's ``config.json``.

    Raises:
        LandscapeError: ``error`` (a ConfigError by default) for an unreadable, malformed or refused file.
    """
    file = UntrustedFile(Path(path), "run configuration (config.json)", _FIX, error)
    return config_from_record(read_json(path, kind=file.kind, fix=file.fix, error=error), file)


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's ``summary.json``: an object whose :data:`SUMMARY` entries have their types.

    Raises:
        DataFormatError: unreadable, not an object, or an entry of the wrong type.
    """
    file = UntrustedFile(Path(path), "run summary (summary.json)", _FIX)
    summary = file.mapping(read_json(path, kind=file.kind, fix=file.fix))
    for key, rule in SUMMARY.items():
        file.field(summary, key, optional(rule), default=None)
    return summary


def check_metrics(
    lines: Any, file: UntrustedFile, *, rounds: int | None = None, required: Sequence[str] = tuple(METRICS_LINE)
) -> list[dict[str, Any]]:
    """``lines`` as a list of evaluations in increasing rounds <= ``rounds``, with the ``required`` :data:`METRICS_LINE` entries.

    The other entries of :data:`METRICS_LINE` are checked when present. A resume needs them all (its
    summary reads them); figures need only ``round`` and ``test_accuracy``.

    Raises:
        LandscapeError: ``file``'s error, naming the first bad evaluation.
    """
    if not isinstance(lines, Sequence) or isinstance(lines, (str, bytes)):
        file.fail(f"its metrics must be a list of evaluations, got {type(lines).__name__}")
    checked: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        where = f"evaluation {n}: "
        entry = file.mapping(line, f"evaluation {n}")
        for key, rule in METRICS_LINE.items():
            file.field(entry, key, rule, where, **({} if key in required else {"default": None}))
        if checked and entry["round"] <= checked[-1]["round"]:
            file.fail(f"{where}round {entry['round']} does not follow round {checked[-1]['round']}")
        if rounds is not None and entry["round"] > rounds:
            file.fail(f"{where}round {entry['round']} is beyond the {rounds} rounds it covers")
        checked.append(entry)
    return checked


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl``: one evaluation per line (:func:`check_metrics`).

    Raises:
        DataFormatError: unreadable, a line that is not JSON, or an evaluation of the wrong shape.
    """
    file = UntrustedFile(Path(path), "metrics file (metrics.jsonl)", _FIX, DataFormatError)
    return check_metrics(read_json_lines(path, kind=file.kind, fix=file.fix), file, required=("round", "test_accuracy"))
