"""sweep(): picks the best validation setting, never reads the test split, keeps validation examples from the clients, resumes, refuses bad grids."""

from __future__ import annotations

import json

import pytest

from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.holdout import holdout_indices
from fedtrain.io import read_json
from fedtrain.run_files import read_summary
from fedtrain.sweep import SweepGrid, SweepPoint, sweep
from tests.conftest import write_learnable_mnist_like
from tests.fedtrain.test_run import _one_thread  # noqa: F401 (autouse fixture: one torch thread, restored)


def base(**changes) -> TrainConfig:
    values = dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [16]}, partition="iid", num_clients=4,
                  samples_per_client=100, clients_per_round=2, rounds=4, batch_size=25, lr=0.1, eval_every=2, last_k=2,
                  validation=300, device="cpu")
    return TrainConfig(**{**values, **changes})


def scores(record) -> list:
    """Everything a sweep measured, without the machine's timings."""
    return [{k: v for k, v in run.items() if k != "wall_seconds"} for run in record["runs"]], record["points"], record["best"]


def test_the_best_point_has_the_highest_mean_validation_accuracy_of_its_runs(tmp_path):
    grid = SweepGrid(algorithms=("fedsam",), rhos=(0.05,), lrs=(1e-4, 0.1), seeds=(0, 1))
    record = sweep(base(), grid, tmp_path / "s")
    by_lr = {}
    for run in record["runs"]:  # each run's score is its own summary's mean of the last k validation evaluations
        summary = read_summary(tmp_path / "s" / run["folder"] / "summary.json")
        assert summary["eval_split"] == "validation" and run["accuracy"] == summary["last_k_mean_accuracy"]
        assert run["convergence"] == summary["convergence"]  # the run's own convergence check, recomputed from its metrics
        by_lr.setdefault(run["lr"], []).append(run["accuracy"])
    means = {lr: sum(v) / len(v) for lr, v in by_lr.items()}
    best = record["best"]["per_algorithm"]["fedsam"]
    assert best["lr"] == max(means, key=means.get) == 0.1  # lr 1e-4 barely moves in 4 rounds
    assert best["mean"] == pytest.approx(means[0.1]) and best["n"] == 2
    assert record["best"]["overall"] == best
    table = (tmp_path / "s" / "sweep.md").read_text()
    assert table.count("**") == 2  # the best point in bold, once
    assert "mean of its last 2 evaluations on the validation split" in table and "300 held-out training examples" in table
    assert read_json(tmp_path / "s" / "sweep.json") == json.loads(json.dumps(record))


def test_the_grid_makes_one_point_per_setting_that_applies():
    points = SweepGrid(algorithms=("fedavg", "fedsam", "fedasam"), rhos=(0.1, 0.5), etas=(0.0, 0.2)).points(base())
    assert points[0] == SweepPoint("fedavg", None, None, 0.1)
    assert [p.rho for p in points if p.algorithm == "fedsam"] == [0.1, 0.5]
    assert {(p.rho, p.eta) for p in points if p.algorithm == "fedasam"} == {(0.1, 0.0), (0.5, 0.0), (0.1, 0.2), (0.5, 0.2)}
    assert len({p.name for p in points}) == len(points)
    assert SweepPoint("fedasam", 0.5, 0.2, 0.05).config(base(), 3).to_dict() == {
        **base().to_dict(), "algorithm": "fedasam", "rho": 0.5, "eta": 0.2, "lr": 0.05, "seed": 3}


def _idx_base(data_dir) -> TrainConfig:
    return base(dataset="mnist", data_dir=str(data_dir), validation=100, samples_per_client=60, clients_per_round=2)


def test_the_sweep_never_reads_the_test_split(tmp_path):
    write_learnable_mnist_like(tmp_path / "clean", num_train=400, num_test=100)
    write_learnable_mnist_like(tmp_path / "poisoned", num_train=400, num_test=100)
    poisoned = tmp_path / "poisoned"
    # other labels in a well-formed file, then garbage: a sweep that read either would change or fail
    (poisoned / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 100]) + bytes((7 * i) % 10 for i in range(100)))
    (poisoned / "t10k-images-idx3-ubyte").write_bytes(b"not an IDX file at all")
    grid = SweepGrid(algorithms=("fedavg", "fedsam"), rhos=(0.05, 0.5), seeds=(0,))
    clean = sweep(_idx_base(tmp_path / "clean"), grid, tmp_path / "a")
    dirty = sweep(_idx_base(poisoned), grid, tmp_path / "b")
    assert scores(clean) == scores(dirty)
    (poisoned / "t10k-labels-idx1-ubyte").unlink()
    (poisoned / "t10k-images-idx3-ubyte").unlink()
    assert scores(sweep(_idx_base(poisoned), grid, tmp_path / "c")) == scores(clean)  # no test files at all


def test_no_client_of_any_run_holds_a_validation_example(tmp_path):
    record = sweep(base(partition="dirichlet", alpha=0.5), SweepGrid(algorithms=("fedsam",), rhos=(0.1,), seeds=(0, 1)), tmp_path)
    for run in record["runs"]:
        folder = tmp_path / run["folder"]
        held = set(holdout_indices(1200, 300, seed=run["seed"]).tolist())
        for client in read_json(folder / "partition.json")["clients"]:
            assert not held & set(client["indices"])
        assert all(json.loads(line)["eval_split"] == "validation" for line in (folder / "metrics.jsonl").read_text().splitlines())


class _Interrupt(Exception):
    pass


def test_an_interrupted_sweep_continues_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path):
    grid = SweepGrid(algorithms=("fedsam",), rhos=(0.05, 0.5), seeds=(0,))

    def stop_in_the_second_run(event):
        if "run 2/2" in event.detail and "round 3/" in event.detail:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        sweep(base(), grid, tmp_path / "cut", progress=stop_in_the_second_run)
    first = tmp_path / "cut" / "runs" / "fedsam_rho0.05_lr0.1-seed0" / "summary.json"
    stamp = first.stat().st_mtime_ns
    lines = []
    resumed = sweep(base(), grid, tmp_path / "cut", log=lines.append)
    assert first.stat().st_mtime_ns == stamp  # the finished run was not touched
    assert any("run 1/2" in line and "skipped" in line for line in lines)
    assert any("run 2/2" in line and "(resumed)" in line for line in lines)
    assert scores(resumed) == scores(sweep(base(), grid, tmp_path / "whole"))


def test_a_new_grid_extends_the_sweep_and_other_base_settings_are_refused(tmp_path):
    sweep(base(), SweepGrid(algorithms=("fedsam",), rhos=(0.05,)), tmp_path)
    lines = []
    record = sweep(base(), SweepGrid(algorithms=("fedsam",), rhos=(0.5,)), tmp_path, log=lines.append)
    assert [p["rho"] for p in record["points"]] == [0.05, 0.5]
    assert sum("skipped" in line for line in lines) == 1
    with pytest.raises(ConfigError, match=r"holds a sweep with other base settings \(rounds: 4 then, 6 now\).*Use another --out"):
        sweep(base(rounds=6), SweepGrid(algorithms=("fedsam",), rhos=(0.05,)), tmp_path)


@pytest.mark.parametrize("grid, match", [
    (dict(algorithms=("fedsam",), rhos=(-0.1, 0.1)), r"Every rho of the sweep \(--rho\) must be a finite number >= 0, got -0.1"),
    (dict(algorithms=("fedsam",), rhos=()), r"The sweep's rho list \(--rho\) is empty"),
    (dict(algorithms=("fedsam",), rhos=(0.1, 0.1)), r"repeats a value"),
    (dict(algorithms=("fedsam",), rhos=(float("nan"),)), r"must be a finite number"),
    (dict(algorithms=("fedsam",), rhos=(0.1,), lrs=(0.0,)), r"Every lr of the sweep \(--lr\) must be a finite number > 0"),
    (dict(algorithms=("fedsam",), rhos=(0.1,), etas=(0.2,)), r"--eta is FedASAM's offset"),
    (dict(algorithms=("fedavg",), rhos=(0.1,)), r"a sweep of FedAvg alone has none"),
    (dict(algorithms=()), r"at least one algorithm"),
    (dict(algorithms=("sgd",), rhos=(0.1,)), r"must be distinct names among fedavg, fedsam, fedasam"),
])
def test_bad_grids_are_refused_in_one_paragraph(grid, match):
    with pytest.raises(ConfigError, match=match) as err:
        SweepGrid(**grid)
    assert "\n" not in str(err.value)


def test_a_sweep_without_a_validation_split_or_with_one_too_large_is_refused_before_writing(tmp_path):
    grid = SweepGrid(algorithms=("fedsam",), rhos=(0.1,))
    with pytest.raises(ConfigError, match=r"pass --validation N"):
        sweep(base(validation=0), grid, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"With 1000 of the 1200 training examples held out for validation \(--validation\), "
                                          r"200 are left for the clients, and they do not fit"):
        sweep(base(validation=1000), grid, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_whole_sweep_is_one_progress_stage_with_the_running_runs_round_loss_and_an_eta(tmp_path):
    events = []
    sweep(base(), SweepGrid(algorithms=("fedsam",), rhos=(0.05, 0.5)), tmp_path / "a", progress=events.append)
    assert {e.stage for e in events} == {"sweep"} and {e.total for e in events} == {2} and {e.unit for e in events} == {"runs"}
    assert [e.done for e in events] == sorted(e.done for e in events) and events[0].done == 0 and events[-1].done == 2
    rounds = [e for e in events if "round" in e.detail]
    assert rounds[0].detail.startswith("run 1/2 fedsam rho=0.05 lr=0.1 seed 0, round 1/4, loss ")
    assert len(rounds) == 8 and all(e.eta is not None and e.eta >= 0 for e in rounds)
    assert rounds[-1].detail.startswith("run 2/2 fedsam rho=0.5 lr=0.1 seed 0, round 4/4") and rounds[-1].eta == 0
    again = []
    sweep(base(), SweepGrid(algorithms=("fedsam",), rhos=(0.05, 0.5)), tmp_path / "a", progress=again.append)
    assert [e.done for e in again] == [0, 1, 2]  # both runs finished: counted, nothing trained


def test_a_damaged_plan_or_a_folder_of_another_kind_is_refused(tmp_path):
    grid = SweepGrid(algorithms=("fedsam",), rhos=(0.1,))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sweep-plan.json").write_text('{"format": "fedlandscape.sweep-plan", "base": {}, "runs": [{"rho": 1}]}')
    with pytest.raises(ConfigError, match=r"sweep-plan.json is not the plan of a sweep \(KeyError"):
        sweep(base(), grid, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "plan.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a reproduction \(plan.json\).*Choose another --out"):
        sweep(base(), grid, tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["plan.json"]


def test_the_eta_is_the_rounds_left_at_the_seconds_per_round_trained_in_this_session():
    from fedtrain.sweep import _SweepProgress

    now = [0.0]
    events = []
    meter = _SweepProgress(total=3, rounds=4, listener=events.append, clock=lambda: now[0])
    meter.begin()
    meter.finish(False)  # run 1 finished before: no time, no rounds
    meter.start(2, "fedsam rho=0.1 lr=0.1 seed 0", to_train=1)
    for round_, t in ((1, 1.0), (2, 2.0)):
        now[0] = t
        meter.train_event({"round": round_, "rounds": 4, "train_loss": 0.5})
    assert events[-1].eta == pytest.approx(6.0)  # 1 s a round: 2 rounds of this run + 4 of the next
    now[0] = 4.0
    meter.train_event({"round": 4, "rounds": 4, "train_loss": 0.5})
    meter.finish(True)
    now[0] = 10.0
    meter.start(3, "fedsam rho=0.5 lr=0.1 seed 0", to_train=0)  # resumed at round 2: its first 2 rounds not counted
    now[0] = 13.0
    meter.train_event({"round": 3, "rounds": 4, "train_loss": 0.5})
    assert events[-1].eta == pytest.approx(7.0 / 5 * 1)  # (4 s + 3 s) / (4 + 1) rounds, 1 round left
    assert events[-1].detail == "run 3/3 fedsam rho=0.5 lr=0.1 seed 0, round 3/4, loss 0.5000"


def test_a_sweep_whose_plan_was_written_as_plan_json_continues_under_its_new_name(tmp_path):
    grid = SweepGrid(algorithms=("fedsam",), rhos=(0.05,))
    first = sweep(base(), grid, tmp_path)
    (tmp_path / "sweep-plan.json").rename(tmp_path / "plan.json")  # as sweeps wrote it before it had its own name
    lines = []
    again = sweep(base(), SweepGrid(algorithms=("fedsam",), rhos=(0.05, 0.5)), tmp_path, log=lines.append)
    assert (tmp_path / "sweep-plan.json").is_file() and not (tmp_path / "plan.json").exists()
    assert again["runs"][0] == first["runs"][0] and sum("skipped" in line for line in lines) == 1
