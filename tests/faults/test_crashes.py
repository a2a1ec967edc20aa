"""Crash consistency beyond training: `plot-surface --resume` and `reproduce` killed with SIGKILL at a random point and
run again end with exactly the numbers of an uninterrupted run (and take over the dead process's lock)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fedtrain.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fedtrain.lock import LOCK_NAME
from fedtrain.models import build_model
from landscape.surface.record import load_surface

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SCRIPT = str(Path(sys.executable).with_name("landscape"))


def wait_for(condition, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, "the process ended before the point where it was to be killed"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def points_done(file: Path) -> int:
    try:
        return int(load_surface(file).done.sum())
    except Exception:  # noqa: BLE001 - not written yet
        return 0


def same_surface(a: Path, b: Path) -> bool:
    x, y = load_surface(a), load_surface(b)
    return x.complete and y.complete and x.values.keys() == y.values.keys() and all(
        np.array_equal(x.values[k], y.values[k]) for k in y.values)


def test_plot_surface_killed_at_a_random_point_resumes_to_the_uninterrupted_numbers(tmp_path):
    kwargs = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [16]}
    model = build_model("mlp", **kwargs, seed=0)
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=kwargs, weights=model.state_dict(), dataset="synthetic"), tmp_path / "a.pt")
    args = [SCRIPT, "plot-surface", str(tmp_path / "a.pt"), "--steps", "9", "--samples", "300", "--points-per-pass", "2",
            "--plot", "heatmap", "--device", "cpu"]
    full = subprocess.run([*args, "--out", str(tmp_path / "full")], env=ENV, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr

    stop_after = random.randrange(2, 60)  # of 81 points: a different moment on every run of the suite
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(killed)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: points_done(killed / "surface.npz") >= stop_after, proc)
    time.sleep(random.uniform(0, 0.2))
    kill(proc)
    done = points_done(killed / "surface.npz")
    assert 0 < done < 81, f"killed after {done} points (aimed at {stop_after})"
    assert json.loads((killed / LOCK_NAME).read_text())["pid"] == proc.pid  # the dead holder's record stays

    refused = subprocess.run([*args, "--out", str(killed)], env=ENV, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "--resume" in refused.stderr  # a partial grid is never overwritten silently
    resumed = subprocess.run([*args, "--out", str(killed), "--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert same_surface(killed / "surface.npz", tmp_path / "full" / "surface.npz"), f"killed after {done} points"
    assert not (killed / LOCK_NAME).exists() and not list(killed.glob("*.tmp"))


REPRODUCE = """
import sys
from landscape.report.presets import PLANE_MODELS, ReproduceSettings
from landscape.report.reproduce import reproduce
from landscape.settings import HessianSettings, SurfaceSettings

settings = ReproduceSettings(
    train_preset="quick",
    train_overrides=dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, num_clients=6, samples_per_client=30,
                         rounds=6, clients_per_round=2, batch_size=15, swa_c=2, eval_every=2, eval_last=0, last_k=2,
                         checkpoint_every=1),
    splits=(("heterogeneous", 0.0),),
    algorithms={"heterogeneous": PLANE_MODELS},
    hessian=HessianSettings(split="train", num_examples=60, batch_size=60, top_k=2, tol=1e-3, trace_matvecs=4,
                            density_probes=2, density_steps=5),
    surface=SurfaceSettings(directions="random", range=1.0, steps=5, splits=("train",), num_examples=60, batch_size=60,
                            points_per_pass=2),
    plane=SurfaceSettings(steps=5, splits=("train",), num_examples=60, batch_size=60, points_per_pass=2),
)
reproduce(settings, sys.argv[1], device="cpu", log=lambda line: print(line, flush=True))
"""


def reproduction(out: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", REPRODUCE, str(out)], env=ENV, text=True, **popen)


def without_timings(value):
    if isinstance(value, dict):
        # a checkpoint's path and bytes (it records its run's timings) differ; its weights are compared on their own
        ignored = ("versions", "device_used", "checkpoint", "checkpoint_sha256")
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k and k not in ignored}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_reproduce_killed_at_a_random_stage_finishes_with_the_uninterrupted_numbers(tmp_path):
    full = reproduction(tmp_path / "full", stdout=subprocess.PIPE)
    stages = [line for line in full.stdout]
    assert full.wait(timeout=600) == 0
    started = [i for i, line in enumerate(stages) if line.rstrip().endswith("...")]
    assert len(started) >= 3 + 3 + 3 + 1  # trainings, Hessians, surfaces, the plane

    kill_in = random.choice(started)  # during a random stage, a random moment into it
    proc = reproduction(tmp_path / "killed", stdout=subprocess.PIPE)
    for _ in range(kill_in + 1):
        proc.stdout.readline()
    time.sleep(random.uniform(0, 0.5))
    kill(proc)
    assert not (tmp_path / "killed" / "reproduce.json").exists(), f"finished before the kill (stage {kill_in})"

    again = reproduction(tmp_path / "killed", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, f"stage {kill_in}: {stages[kill_in]}\n{err}"

    a, b = tmp_path / "killed", tmp_path / "full"
    finals = sorted(p.relative_to(b) for p in b.rglob("final.pt"))
    assert len(finals) == 3
    for name in finals:
        x, y = load_checkpoint(a / name), load_checkpoint(b / name)
        assert all(torch.equal(x.weights[k], y.weights[k]) for k in y.weights), f"{name}, killed in {stages[kill_in]}"
    for name in sorted(p.relative_to(b) for p in b.rglob("hessian.json")):
        assert without_timings(json.loads((a / name).read_text())) == without_timings(json.loads((b / name).read_text())), name
    surfaces = sorted(p.relative_to(b) for p in b.rglob("surface.npz"))
    assert len(surfaces) == 3 + 1
    for name in surfaces:
        assert same_surface(a / name, b / name), f"{name}, killed in {stages[kill_in]}"
    assert (a / "figures" / "results.csv").read_text() == (b / "figures" / "results.csv").read_text()
    assert not list(a.rglob(LOCK_NAME)) and not list(a.rglob("*.tmp")) and not list(a.rglob("partial.npz"))
