"""Progress of long work: the typed ``Progress`` event the library emits and the printer the CLI shows it with.

Contract (one mechanism for the whole toolkit):

* The library never prints. A long function takes ``progress: ProgressCallback | None`` and calls it with
  :class:`Progress` events; ``None`` means nobody listens (no cost beyond the call).
* A *stage* is one named piece of work counted in one unit (``"hessian"`` in ``"products"``, ``"surface"``
  in ``"grid points"``, ``"train"`` in ``"rounds"``, ``"reproduce"`` in ``"runs"``). A stage starts with an
  event ``done=0`` (or the count a resumed stage starts from), its counts never decrease, and its last event
  has ``done == total``. ``total`` is the planned amount; it may shrink while the stage runs (a Lanczos run
  that converges early plans fewer products) but never below ``done``.
* ``detail`` says what runs now (``"lanczos"``, ``"pass 2/3"``, ``"run 3/8 fedasam, round 40/80"``),
  ``hint`` which flags shorten the stage (shown once with the cost estimate), ``log`` marks an event worth a
  line in a log (an evaluated round), ``eta`` overrides the printer's constant-rate extrapolation.
* :class:`ProgressPrinter` shows events: on a terminal one live line (stage, done/planned, rate, elapsed, ETA)
  redrawn in place; in a log plain lines when a stage starts, when an event asks for it, at most every
  ``interval`` seconds otherwise, and when the stage ends; and once per stage, after ``estimate_after``
  seconds of work, the projected total time. ``quiet=True`` prints nothing (errors are the CLI's business,
  on stderr).

Training's dict events (``fedtrain.run.train``) go through the same printer: :meth:`ProgressPrinter.__call__`
accepts them and turns them into ``Progress`` with :func:`round_progress`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["Progress", "ProgressCallback", "ProgressPrinter", "format_duration", "round_progress", "report"]


@dataclass(frozen=True)
class Progress:
    """One progress event: ``done`` of ``total`` ``unit`` of ``stage``.

    Attributes:
        stage: the piece of work (``"hessian"``, ``"surface"``, ``"train"``, ``"reproduce"``).
        done: units finished so far (never decreases within a stage).
        total: units planned (``>= done``; the last event of a stage has ``done == total``).
        unit: what is counted, plural (``"products"``, ``"grid points"``, ``"rounds"``, ``"runs"``).
        detail: what runs now, free text.
        hint: which flags shorten this stage (printed with the cost estimate).
        log: a log should show this event even between its regular lines.
        eta: seconds left, when the emitter knows better than a constant rate (a job whose units cost unequal
            time, e.g. a reproduction's training runs and analyses); ``None``: the printer extrapolates.
        eta_note: what ``eta`` leaves out, shown beside it (``"without hessian, surface: not timed yet"``).
    """

    stage: str
    done: int
    total: int
    unit: str = "steps"
    detail: str = ""
    hint: str = ""
    log: bool = False
    eta: float | None = None
    eta_note: str = ""

    def __post_init__(self) -> None:
        if self.done < 0 or self.total < 0:
            raise ValueError(f"Progress counts must be >= 0, got done={self.done}, total={self.total}.")

    @property
    def finished(self) -> bool:
        """Whether this is the stage's last event."""
        return self.done >= self.total


ProgressCallback = Callable[[Progress], None]


def report(progress: ProgressCallback | None, event: Progress) -> None:
    """Call ``progress`` with ``event`` when somebody listens."""
    if progress is not None:
        progress(event)


def format_duration(seconds: float) -> str:
    """``75.3`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def round_progress(event: dict[str, Any], accuracy: float | None = None) -> Progress:
    """A training round's dict event (``round``, ``rounds``, ``train_loss``, optional ``test_accuracy``) as ``Progress``.

    ``accuracy`` is the last known test accuracy, shown when this round was not evaluated.
    """
    evaluated = event.get("test_accuracy") is not None
    acc = float(event["test_accuracy"]) if evaluated else accuracy
    shown = "  -  " if acc is None else f"{100 * acc:5.2f}%"
    return Progress("round", int(event["round"]), int(event["rounds"]), "rounds",
                    detail=f"loss {event['train_loss']:.4f}  acc {shown}", log=evaluated)


@dataclass
class _Stage:
    """Timing state of the stage being shown."""

    name: str
    start: float
    start_done: int
    last_line: float
    last_done: int
    estimated: bool = False


class ProgressPrinter:
    """A progress callback that shows :class:`Progress` events (and training's dict events) to a person.

    Args:
        stream: where to write (default ``sys.stderr``).
        tty: force terminal (``True``) or plain (``False``) output; default: ``stream.isatty()``.
        width: bar width in characters.
        quiet: print nothing.
        interval: seconds between plain lines of one stage in a log.
        estimate_after: seconds of work after which the projected total time of a stage is printed once.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, width: int = 24, quiet: bool = False,
                 interval: float = 30.0, estimate_after: float = 5.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.width = width
        self.quiet = quiet
        self.interval = interval
        self.estimate_after = estimate_after
        self.clock = clock
        self._stage: _Stage | None = None
        self._accuracy: float | None = None
        self._live = False  # a redrawn line is on screen and wants a newline before anything else

    def __call__(self, event: Progress | dict[str, Any]) -> None:
        """Show one event; a dict is a training round (see :func:`round_progress`)."""
        if isinstance(event, dict):
            event = self._from_round(event)
        if self.quiet:
            return
        now = self.clock()
        stage = self._stage
        new_stage = stage is None or stage.name != event.stage or event.done < stage.last_done
        if new_stage:
            self._end_live()
            stage = self._stage = _Stage(event.stage, now, event.done, now, event.done)
        assert stage is not None
        stage.last_done = event.done
        elapsed = now - stage.start
        rate = (event.done - stage.start_done) / elapsed if elapsed > 0 else 0.0
        eta = event.eta if event.eta is not None else (event.total - event.done) / rate if rate > 0 else None
        if not stage.estimated and elapsed >= self.estimate_after and rate > 0 and not event.finished:
            stage.estimated = True
            self._line(self._estimate(event, elapsed, rate))
        text = self._format(event, elapsed, rate, eta)
        if self.tty:
            filled = int(self.width * event.done / max(event.total, 1))
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r{self._fit(f'{event.stage} [{bar}] ', text, event.detail)}\x1b[K")
            self._live = True
            if event.finished:
                self._end_live()
        elif new_stage or event.log or event.finished or now - stage.last_line >= self.interval:
            self.stream.write(f"{event.stage} {text}\n")
            stage.last_line = now
        self.stream.flush()

    def note(self, text: str) -> None:
        """A permanent line (a stage log), above the live line on a terminal; nothing when quiet."""
        if not self.quiet:
            self._line(text)
            self.stream.flush()

    def begin(self, stage: str, done: int, seconds_ago: float) -> None:
        """Start timing ``stage`` at ``done`` units, ``seconds_ago`` seconds back (a stage whose first event comes late)."""
        now = self.clock()
        self._stage = _Stage(stage, now - seconds_ago, done, now, done)

    def _from_round(self, event: dict[str, Any]) -> Progress:
        if self._stage is None or self._stage.name != "round" or int(event["round"]) <= self._stage.last_done:
            self.begin("round", int(event["round"]) - 1, float(event.get("round_seconds", 0.0)))
        progress = round_progress(event, self._accuracy)
        if event.get("test_accuracy") is not None:
            self._accuracy = float(event["test_accuracy"])
        return progress

    def _format(self, event: Progress, elapsed: float, rate: float, eta: float | None) -> str:
        parts = [f"{event.done}/{event.total} {event.unit}"]
        if event.detail:
            parts.append(event.detail)
        parts.append(f"{rate:.2f} {event.unit}/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        parts.append(f"ETA {format_duration(eta) if eta is not None else '?'}" + (f" ({event.eta_note})" if event.eta_note else ""))
        return "  ".join(parts)

    def _fit(self, head: str, text: str, detail: str) -> str:
        """``head + text`` cut to the terminal's width: a longer line would wrap, and ``\\r`` redraw only its last row.

        The detail is shortened first (the counts, rate, elapsed time and ETA are what the line is for), then the bar goes.
        """
        columns = self._columns()
        line = head + text
        if columns is None or len(line) < columns:
            return line
        room = len(detail) - (len(line) - (columns - 1)) - 1
        if detail and room >= 8:
            return head + text.replace(detail, detail[:room] + "~", 1)
        line = head.split(" [")[0] + " " + (text.replace("  " + detail, "", 1) if detail else text)
        return line[: columns - 1]

    def _columns(self) -> int | None:
        """The width of the terminal the stream writes to; ``None`` when it is not one (a file, a pipe, a test buffer)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return None

    @staticmethod
    def _estimate(event: Progress, elapsed: float, rate: float) -> str:
        projected = elapsed + event.eta if event.eta is not None else event.total / rate
        text = (f"{event.stage}: {event.total} {event.unit} planned; at {rate:.3g} {event.unit}/s about "
                f"{format_duration(projected)} in all ({format_duration(projected - elapsed)} to go"
                f"{', ' + event.eta_note if event.eta_note else ''})")
        return text + (f". {event.hint}" if event.hint else "")

    def _line(self, text: str) -> None:
        """A permanent line, above the live one on a terminal."""
        if self.tty and self._live:
            self.stream.write("\r\x1b[K")
            self._live = False
        self.stream.write(text + "\n")

    def _end_live(self) -> None:
        if self._live:
            self.stream.write("\n")
            self._live = False
