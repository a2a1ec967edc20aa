"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run (weights and metrics)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from fedtrain.checkpoint import load_checkpoint
from fedtrain.run import TIMING_FIELDS

ARGS = [
    "--dataset", "synthetic", "--model", "mlp", "--num-clients", "8", "--samples-per-client", "60",
    "--clients-per-round", "3", "--batch-size", "16", "--rounds", "90", "--lr", "0.05", "--algorithm", "fedasam",
    "--server-momentum", "0.5", "--swa", "--swa-start", "0.5", "--swa-c", "5", "--eval-every", "10",
    "--checkpoint-every", "3", "--seed", "11", "--threads", "1",
]


def landscape(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("landscape")
    return [str(script), "train", *args]


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def kill_after(args: list[str], run: Path, round: int, env: dict[str, str]) -> int:
    """Start ``landscape train ARGS --out RUN``, SIGKILL it once ``latest.pt`` is at ``round`` or later; the round it holds."""
    proc = subprocess.Popen(landscape(*args, "--out", str(run)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (latest.exists() and load_checkpoint(latest).round >= round):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return load_checkpoint(latest).round


def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    interrupted_at = kill_after(ARGS, killed, 30, env)
    assert 30 <= interrupted_at < 90 and not (killed / "summary.json").exists()  # really interrupted mid-run

    resumed = subprocess.run(landscape("--resume", str(killed)), env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = subprocess.run(landscape(*ARGS, "--out", str(full)), env=env, capture_output=True, text=True, timeout=120)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    a = load_checkpoint(killed / "checkpoints" / "final.pt")
    b = load_checkpoint(full / "checkpoints" / "final.pt")
    assert a.round == b.round == 90 and a.swa_count == b.swa_count > 0
    for name in b.weights:
        assert torch.equal(a.weights[name], b.weights[name])
        assert torch.equal(a.swa_weights[name], b.swa_weights[name])
        assert torch.equal(a.state["server_momentum"][name], b.state["server_momentum"][name])
    assert metrics(killed) == metrics(full) and len(metrics(full)) == 9
    assert json.loads(resumed.stdout)["final_accuracy"] == json.loads(uninterrupted.stdout)["final_accuracy"]
