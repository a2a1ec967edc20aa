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
    # the first run: after 1 of 4 rounds (25 s) it projects 100 s for itself, 100 s for the other run, and,
    # hessians not seen yet, the mean of the kinds seen (100 s) for each of the two
    first_round = next(e for e in events if e.detail.endswith("round 1/4"))
    assert first_round.detail == "train a (1/2), round 1/4" and first_round.eta == 75.0 + 100.0 + 2 * 100.0
    runner("train", "b", None)  # done already: skipped, no time
    runner("hessian", "a", work(10.0))
    assert events[-1].done == 3 and events[-1].eta == 10.0  # one hessian left, at what the first took
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
    assert len(record) == 1 and events[-1].eta == 0.0 and events[2].eta == 4.0  # figures not seen: the mean of the kinds seen
