"""The stages of a reproduction as one job: each stage run or skipped, logged, timed, and the whole job's progress and ETA.

A reproduction is a planned list of stages (training runs, Hessian analyses, surfaces, planes, figures)
whose costs differ by orders of magnitude, so a constant rate over stages would mislead. The ETA here is
per kind: a stage still to run is expected to take what the computed (not skipped) stages of its kind took
on average, and the running stage what its own progress so far projects. A kind not timed yet is left out of
the ETA and the event says so (``eta_note``, e.g. "without hessian, surface, plane: not timed yet"): priced
at the mean of the kinds seen, as before, the analyses of a reproduction were each priced as a training
run, and the ETA before them was several times the real time. Events are one ``"reproduce"``
:class:`~fedtrain.progress.Progress` in ``"stages"``: the detail names the running stage, run k of n for
training, and its own count (round and training loss, products, grid points).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fedtrain.progress import Progress, ProgressCallback, report

__all__ = ["StageRunner"]


class StageRunner:
    """Runs the stages of a job one at a time: ``runner(kind, label, action)``; ``action=None`` means done already.

    Args:
        planned: the kind of every stage of the job, in order (``"train"``, ``"hessian"``, ...).
        record: list the runner appends ``{"stage", "what", "skipped", "seconds"}`` to, one per stage.
        log: called with one line when a stage starts, ends or is skipped.
        progress: the job's progress (``None``: nobody listens).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, planned: Sequence[str], record: list[dict[str, Any]], log: Callable[[str], None],
                 progress: ProgressCallback | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.planned = list(planned)
        self.record = record
        self.log = log
        self.listener = progress
        self.clock = clock
        self.done = 0
        self._seconds: dict[str, list[float]] = {}
        self._current: tuple[str, str, float] | None = None  # kind, label, start
        self._inner: tuple[int, float] | None = None  # first count seen, fraction done

    def __call__(self, kind: str, label: str, action: Callable[[], Any] | None) -> None:
        """Run ``action`` as the next stage (or record it as skipped), logging and timing it."""
        if action is None:
            self.log(f"[{kind}] {label}: done already, skipped")
            self.record.append({"stage": kind, "what": label, "skipped": True, "seconds": 0.0})
            self._advance()
            return
        start = self.clock()
        self.log(f"[{kind}] {label} ...")
        self._current, self._inner = (kind, label, start), None
        self._report("")
        action()
        seconds = self.clock() - start
        self._current = None
        self._seconds.setdefault(kind, []).append(seconds)
        self.log(f"[{kind}] {label}: {seconds:.1f} s")
        self.record.append({"stage": kind, "what": label, "skipped": False, "seconds": seconds})
        self._advance()

    @contextmanager
    def running(self, kind: str, label: str) -> Iterator[None]:
        """Report a stage that its caller runs, logs and records itself (the figures of a reproduction)."""
        self._current, self._inner = (kind, label, self.clock()), None
        self._report("")
        try:
            yield
        finally:
            self._seconds.setdefault(kind, []).append(self.clock() - self._current[2])
            self._current = None
        self._advance()

    def progress(self, event: Progress) -> None:
        """The running stage's own progress (a Hessian's products, a surface's grid points)."""
        self._step(event.done, event.total, f"{event.done}/{event.total} {event.unit}")

    def train_progress(self, event: dict[str, Any]) -> None:
        """The running training stage's rounds and training loss (``fedtrain.run.train``'s dict events)."""
        done, total = int(event["round"]), int(event["rounds"])
        loss = f", loss {float(event['train_loss']):.4f}" if event.get("train_loss") is not None else ""
        self._step(done, total, f"round {done}/{total}{loss}", first=done - 1)

    def _step(self, done: int, total: int, detail: str, first: int | None = None) -> None:
        if self._inner is None:
            self._inner = (done if first is None else first, 0.0)
        start = self._inner[0]
        self._inner = (start, (done - start) / (total - start) if total > start else 1.0)
        self._report(detail)

    def _advance(self) -> None:
        self.done += 1
        self._report("")

    def _report(self, detail: str) -> None:
        if self.listener is None:
            return
        text = detail
        if self._current is not None:
            kind, label, _ = self._current
            runs = [k for k in self.planned if k == kind]
            index = sum(1 for k in self.planned[: self.done] if k == kind) + 1
            text = f"{kind} {label} ({index}/{len(runs)})" + (f", {detail}" if detail else "")
        total = max(len(self.planned), self.done)
        eta, note = self._eta()
        report(self.listener, Progress("reproduce", self.done, total, "stages", detail=text, eta=eta, eta_note=note))

    def _eta(self) -> tuple[float | None, str]:
        """Seconds left and the kinds they leave out: the running stage by its own progress, the rest by the mean of their kind.

        A kind with no timed stage yet (and no progress of its own while it runs) is left out and named in the
        note; with nothing timed at all the ETA is unknown (``None``).
        """
        means = {kind: sum(s) / len(s) for kind, s in self._seconds.items()}
        untimed: list[str] = []
        running = 0.0
        if self._current is not None:
            kind, _, start = self._current
            elapsed = self.clock() - start
            fraction = self._inner[1] if self._inner is not None else 0.0
            if fraction > 0:
                means.setdefault(kind, elapsed / fraction)
                running = elapsed / fraction - elapsed
            elif kind in means:
                running = max(means[kind] - elapsed, 0.0)
            else:
                untimed.append(kind)
        if not means:
            return None, ""
        pending = self.planned[self.done + (1 if self._current is not None else 0):]
        untimed += [kind for kind in dict.fromkeys(pending) if kind not in means and kind not in untimed]
        note = f"without {', '.join(untimed)}: not timed yet" if untimed else ""
        return running + sum(means[kind] for kind in pending if kind in means), note
