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
