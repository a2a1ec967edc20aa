"""ProgressPrinter: a redrawn bar on a terminal, one plain line per evaluation otherwise."""

import io

from fedtrain.progress import ProgressPrinter, format_duration


def events():
    return [{"round": r, "rounds": 4, "train_loss": 1.0 / r, "test_accuracy": 0.5 if r % 2 == 0 else None} for r in range(1, 5)]


def test_terminal_output_redraws_one_line_with_rounds_loss_accuracy_rate_and_eta():
    out = io.StringIO()
    printer = ProgressPrinter(out, tty=True, width=4)
    for event in events():
        printer(event)
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "[####] 4/4" in text and "acc 50.00%" in text and "rounds/s" in text and "ETA 0:00" in text


def test_plain_output_prints_evaluated_rounds_only():
    out = io.StringIO()
    printer = ProgressPrinter(out, tty=False)
    for event in events():
        printer(event)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"] and "\r" not in out.getvalue()


def test_format_duration():
    assert format_duration(75.3) == "1:15" and format_duration(3725) == "1:02:05"


# --- the general Progress event and its printer ---------------------------------------------------------

import pytest

from fedtrain.progress import Progress, report


class FakeClock:
    """Seconds that advance only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def products(total: int = 10, seconds_each: float = 2.0, clock: FakeClock | None = None):
    """A stage of ``total`` products, each taking ``seconds_each`` on ``clock``."""
    for done in range(total + 1):
        if clock is not None and done:
            clock.now += seconds_each
        yield Progress("hessian", done, total, "products", detail="lanczos", hint="--samples shortens it.")


def test_plain_lines_at_start_every_interval_and_end_with_one_cost_estimate():
    out, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(out, tty=False, interval=5.0, estimate_after=3.0, clock=clock)
    for event in products(clock=clock):
        printer(event)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("hessian 0/10 products  lanczos")
    estimates = [line for line in lines if "planned" in line]
    # after 2 products (4 s >= 3 s) at 0.5 products/s: 20 s in all, 16 s to go, with the hint
    assert estimates == ["hessian: 10 products planned; at 0.5 products/s about 0:20 in all (0:16 to go). --samples shortens it."]
    counted = [line.split()[1] for line in lines if "planned" not in line]
    assert counted == ["0/10", "3/10", "6/10", "9/10", "10/10"]  # a line every >= 5 s, and the last
    assert lines[-1].endswith("elapsed 0:20  ETA 0:00") and "\r" not in out.getvalue()


def test_terminal_shows_one_live_line_per_stage_with_elapsed_and_eta():
    out, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(out, tty=True, width=10, estimate_after=1e9, clock=clock)
    for event in products(4, clock=clock):
        printer(event)
    printer(Progress("surface", 0, 2, "grid points"))
    clock.now += 1.0
    printer(Progress("surface", 1, 2, "grid points", detail="pass 1/1"))
    text = out.getvalue()
    assert text.count("\n") == 1  # the finished Hessian stage; the surface line is still live
    assert "hessian [##########] 4/4 products  lanczos  0.50 products/s  elapsed 0:08  ETA 0:00" in text
    assert text.endswith("surface [#####.....] 1/2 grid points  pass 1/1  1.00 grid points/s  elapsed 0:01  ETA 0:01\x1b[K")


def test_estimate_goes_above_the_live_line_on_a_terminal():
    out, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(out, tty=True, estimate_after=3.0, clock=clock)
    for event in products(clock=clock):
        printer(event)
        if event.done == 2:
            break
    assert "\r\x1b[Khessian: 10 products planned" in out.getvalue()


def test_quiet_prints_nothing():
    out = io.StringIO()
    printer = ProgressPrinter(out, quiet=True)
    for event in [*products(), *events()]:
        printer(event)
    assert out.getvalue() == ""


def test_a_stage_restarting_from_zero_is_timed_afresh():
    out, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(out, tty=False, clock=clock)
    for _ in range(2):
        for event in products(2, seconds_each=10.0, clock=clock):
            printer(event)
    assert out.getvalue().splitlines()[-1].endswith("elapsed 0:20  ETA 0:00")


def test_report_calls_only_a_listener_and_counts_are_checked():
    seen: list[Progress] = []
    report(None, Progress("x", 0, 1))
    report(seen.append, Progress("x", 1, 1))
    assert seen == [Progress("x", 1, 1)] and seen[0].finished
    with pytest.raises(ValueError, match="must be >= 0"):
        Progress("x", -1, 1)


def test_an_emitters_eta_wins_and_notes_go_above_the_live_line():
    out, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(out, tty=True, estimate_after=1e9, clock=clock)
    printer(Progress("reproduce", 0, 4, "stages"))
    clock.now += 10
    printer(Progress("reproduce", 1, 4, "stages", eta=125.0))
    printer.note("[train] heterogeneous fedavg seed 0: 10.0 s")
    text = out.getvalue()
    assert "1/4 stages  0.10 stages/s  elapsed 0:10  ETA 2:05" in text
    assert text.endswith("\r\x1b[K[train] heterogeneous fedavg seed 0: 10.0 s\n")
    quiet = io.StringIO()
    ProgressPrinter(quiet, quiet=True).note("x")
    assert quiet.getvalue() == ""


def test_the_live_line_fits_the_terminal_so_redraws_do_not_wrap(monkeypatch):
    out, clock = io.StringIO(), FakeClock()
    printer = ProgressPrinter(out, tty=True, width=10, estimate_after=1e9, clock=clock)
    event = Progress("reproduce", 3, 25, "stages", detail="plane heterogeneous seed 0 (FedAvg, FedASAM, FedASAM+SWA), 8/25 grid points")
    monkeypatch.setattr(printer, "_columns", lambda: 100)
    printer(event)
    line = out.getvalue().split("\r")[-1].removesuffix("\x1b[K")
    assert len(line) == 99 and line.startswith("reproduce [#.........] 3/25 stages  plane heterogeneous") and line.endswith("ETA ?")
    assert "~" in line
    monkeypatch.setattr(printer, "_columns", lambda: 50)
    printer(event)
    line = out.getvalue().split("\r")[-1].removesuffix("\x1b[K")
    assert len(line) <= 49 and line.startswith("reproduce 3/25 stages  0.00 stages/s")
    assert ProgressPrinter(io.StringIO())._columns() is None  # not a terminal: no limit
