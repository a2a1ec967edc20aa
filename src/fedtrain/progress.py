"""Progress reporting for training: a one-line bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressPrinter", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75.3`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressPrinter:
    """A ``progress`` callback for :func:`fedtrain.run.train`.

    On a terminal it redraws one line after every round (rounds, train loss, last test accuracy, rounds/s,
    ETA); otherwise it prints one plain line per evaluated round, so logs stay readable.

    Args:
        stream: where to write (default ``sys.stderr``).
        tty: force terminal (``True``) or plain (``False``) output; default: ``stream.isatty()``.
        width: bar width in characters.
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, width: int = 24) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.width = width
        self._start = time.perf_counter()
        self._first_round: int | None = None
        self._accuracy: float | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        """Report one finished round: ``event`` has ``round`` (completed), ``rounds``, ``train_loss`` and, when evaluated, ``test_accuracy``."""
        done, total = int(event["round"]), int(event["rounds"])
        if self._first_round is None:
            self._first_round = done - 1
            self._start = time.perf_counter() - float(event.get("round_seconds", 0.0))
        if event.get("test_accuracy") is not None:
            self._accuracy = float(event["test_accuracy"])
        elapsed = time.perf_counter() - self._start
        rate = (done - self._first_round) / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        acc = "  -  " if self._accuracy is None else f"{100 * self._accuracy:5.2f}%"
        stats = f"loss {event['train_loss']:.4f}  acc {acc}  {rate:.2f} rounds/s  ETA {format_duration(eta)}"
        if self.tty:
            filled = int(self.width * done / max(total, 1))
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {done}/{total}  {stats}")
            if done == total:
                self.stream.write("\n")
        elif event.get("test_accuracy") is not None or done == total:
            self.stream.write(f"round {done}/{total}  {stats}\n")
        self.stream.flush()
