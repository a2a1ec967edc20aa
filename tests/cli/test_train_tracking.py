"""`landscape train --track-sharpness EVERY`: lambda_max in metrics.jsonl, recorded in config.json, rebuilt on --resume,
clean errors for rounds that are not evaluated and for --track-trace alone."""

import json

from tests.cli.test_train import TINY, _restore_threads, invoke  # noqa: F401 (autouse fixture)


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tracking_logs_lambda_max_at_the_tracked_rounds_and_a_resume_rebuilds_the_tracker(tmp_path):
    run = tmp_path / "run"
    result = invoke(*TINY, "--track-sharpness", "2", "--track-trace", "--out", str(run))
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["observers"]["sharpness"]["every"] == 2 and config["observers"]["sharpness"]["trace"] is True
    rows = _rows(run)
    assert [r["round"] for r in rows] == [2, 4]
    assert all(r["sharpness_lambda_max"] > 0 and r["sharpness_trace"] > 0 and r["sharpness_products"] > 0 for r in rows)
    resumed = invoke("--resume", str(run))  # a finished run: nothing to redo, the tracker is rebuilt from config.json
    assert resumed.exit_code == 0, resumed.output


def test_a_tracked_round_that_is_not_evaluated_and_track_trace_alone_are_refused(tmp_path):
    result = invoke(*TINY, "--track-sharpness", "3", "--out", str(tmp_path / "a"))
    assert result.exit_code == 1 and "round 3 is not evaluated" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "a" / "metrics.jsonl").exists()
    result = invoke(*TINY, "--track-trace", "--out", str(tmp_path / "b"))
    assert result.exit_code == 1 and "--track-trace goes with --track-sharpness" in result.output
