"""StageRunner: stages run or skipped, logged and timed; the job's progress in stages with a per-kind ETA."""

from __future__ import annotations

from fedtrain.progress import Progress
from landscape.report.stages import StageRunner


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_stages_are_recorded_and_the_eta_uses_what_each_kind_took():
    clock, events, lines, record = FakeClock(), [], [], []
    runner = StageRunner(["train", "train", "hessian", "hessian"], record, lines.append, events.append, clock=clock)

    def work(seconds: float, rounds: int = 0):
        def action() -> None:
            for r in range(1, rounds + 1):
                clock.now += seconds / rounds
                runner.train_progress({"round": r, "rounds": rounds})
            if not rounds:
                clock.now += seconds
        return action

    runner("train", "a", work(100.0, rounds=4))
    # the first run: after 1 of 4 rounds (25 s) it projects 100 s for itself and 100 s for the other run;
    # hessians, not timed yet, are left out of the ETA and the event says so
    first_round = next(e for e in events if e.detail.endswith("round 1/4"))
    assert first_round.detail == "train a (1/2), round 1/4" and first_round.eta == 75.0 + 100.0
    assert first_round.eta_note == "without hessian: not timed yet"
    runner("train", "b", None)  # done already: skipped, no time
    runner("hessian", "a", work(10.0))
    assert events[-1].done == 3 and events[-1].eta == 10.0 and events[-1].eta_note == ""  # one hessian left, at what the first took
    runner("hessian", "b", work(10.0))
    assert events[-1] == Progress("reproduce", 4, 4, "stages", eta=0.0)
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert [r["skipped"] for r in record] == [False, True, False, False] and [r["seconds"] for r in record] == [100.0, 0.0, 10.0, 10.0]
    assert lines[:3] == ["[train] a ...", "[train] a: 100.0 s", "[train] b: done already, skipped"]


def test_an_inner_stage_reports_its_own_count_and_nobody_listening_costs_nothing():
    clock, events = FakeClock(), []
    runner = StageRunner(["surface"], [], lambda line: None, events.append, clock=clock)

    def action() -> None:
        runner.progress(Progress("surface", 0, 9, "grid points"))  # a stage's count starts where it starts
        clock.now += 5.0
        runner.progress(Progress("surface", 3, 9, "grid points"))

    runner("surface", "x", action)
    assert events[2].detail == "surface x (1/1), 3/9 grid points" and events[2].eta == 5.0 * 9 / 3 - 5.0
    silent = StageRunner(["train"], [], lambda line: None)
    silent("train", "y", lambda: silent.train_progress({"round": 1, "rounds": 1}))
    assert silent.done == 1


def test_a_stage_its_caller_records_is_reported_and_timed_without_a_record():
    clock, events, record = FakeClock(), [], []
    runner = StageRunner(["train", "figures"], record, lambda line: None, events.append, clock=clock)
    runner("train", "a", lambda: setattr(clock, "now", clock.now + 4.0))
    with runner.running("figures", "out/figures"):
        clock.now += 2.0
    assert [(e.done, e.detail) for e in events] == [(0, "train a (1/1)"), (1, ""), (1, "figures out/figures (1/1)"), (2, "")]
    assert len(record) == 1 and events[-1].eta == 0.0
    assert events[0].eta is None and events[2].eta == 0.0 and events[2].eta_note == "without figures: not timed yet"


def test_the_eta_of_a_reproduction_shaped_job_leaves_out_what_is_not_timed_and_says_so():
    # 2 training runs of 100 s, then a Hessian (10 s) and a surface (30 s) of each run: 280 s in all. Priced at
    # the mean of the kinds seen, the four analyses were 400 s more after the first run (the old ETA: 500 s for 180).
    clock, events = FakeClock(), []
    runner = StageRunner(["train", "train", "hessian", "surface", "hessian", "surface"], [], lambda line: None, events.append,
                         clock=clock)

    def training(seconds: float, rounds: int = 4):
        def action() -> None:
            for r in range(1, rounds + 1):
                clock.now += seconds / rounds
                runner.train_progress({"round": r, "rounds": rounds, "train_loss": 2.5 / r})
        return action

    def analysis(seconds: float):
        return lambda: setattr(clock, "now", clock.now + seconds)

    runner("train", "a", training(100.0))
    after_first = events[-1]
    assert after_first.eta == 100.0 and after_first.eta_note == "without hessian, surface: not timed yet"
    runner("train", "b", training(100.0))
    second = [e for e in events if e.detail.startswith("train b")]
    assert second[1].detail == "train b (2/2), round 1/4, loss 2.5000" and second[1].eta == 75.0
    assert second[2].detail.endswith("round 2/4, loss 1.2500")
    runner("hessian", "a", analysis(10.0))
    assert events[-1].eta == 10.0 and events[-1].eta_note == "without surface: not timed yet"
    runner("surface", "a", analysis(30.0))
    assert events[-1].eta == 40.0 and events[-1].eta_note == ""  # every kind timed: the whole job, exactly here
    assert clock.now + events[-1].eta == 280.0


def test_the_printer_shows_what_the_eta_leaves_out():
    import io

    from fedtrain.progress import ProgressPrinter

    stream, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(stream, tty=False, clock=clock)
    printer(Progress("reproduce", 1, 6, "stages", detail="train b (2/2), round 1/4, loss 2.5000", eta=75.0,
                     eta_note="without hessian, surface: not timed yet"))
    line = stream.getvalue()
    assert "train b (2/2), round 1/4, loss 2.5000" in line and "elapsed 0:00" in line
    assert "ETA 1:15 (without hessian, surface: not timed yet)" in line
