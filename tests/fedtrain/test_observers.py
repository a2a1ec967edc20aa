"""The observer seam of a run: observers see the global weights at their rounds, their numbers join those rounds'
metrics, they change no training number, they must match the run's config, and a resume restores their state."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from fedtrain.checkpoint import load_checkpoint
from fedtrain.errors import ConfigError
from fedtrain.run import TIMING_FIELDS, train
from tests.fedtrain.test_run import _one_thread, tiny  # noqa: F401 (autouse fixture)


class NormObserver:
    """Records the global weights' squared norm and a running count (its state, to test resume)."""

    name = "norm"

    def __init__(self, every: int) -> None:
        self.every = every
        self.count = 0
        self.seen: list[int] = []

    def settings(self):
        return {"every": self.every}

    def observe(self, round, params):
        self.count += 1
        self.seen.append(round)
        return {"squared": float(sum((p.double() ** 2).sum() for p in params.values())), "count": self.count}

    def state_dict(self):
        return {"count": torch.tensor(self.count)}

    def load_state_dict(self, state):
        self.count = int(state["count"])


def _metrics(run):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_observers_join_their_rounds_metrics_and_change_no_training_number(tmp_path):
    observer = NormObserver(every=4)
    config = tiny(observers={"norm": {"every": 4}})
    train(config, tmp_path / "observed", observers=[observer])
    train(tiny(), tmp_path / "plain")
    a = load_checkpoint(tmp_path / "observed" / "checkpoints" / "final.pt")
    b = load_checkpoint(tmp_path / "plain" / "checkpoints" / "final.pt")
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in b.weights)
    observed, plain = _metrics(tmp_path / "observed"), _metrics(tmp_path / "plain")
    assert observer.seen == [4, 8]
    for row, base in zip(observed, plain):
        extra = {k: v for k, v in row.items() if k not in base}
        assert {k: v for k, v in row.items() if k in base} == base
        assert set(extra) == ({"norm_squared", "norm_count"} if row["round"] in (4, 8) else set())
    final = next(r for r in observed if r["round"] == 8)
    assert final["norm_squared"] == pytest.approx(sum(float((w.double() ** 2).sum()) for w in a.weights.values()), rel=1e-12)
    assert int(a.state["observers"]["norm"]["count"]) == 2
    assert "observers" not in b.state  # runs without observers write the checkpoints of before


def test_a_resumed_run_restores_the_observers_state(tmp_path):
    config = tiny(observers={"norm": {"every": 2}}, checkpoint_rounds=(4,))
    train(config, tmp_path / "full", observers=[NormObserver(2)])
    # a run killed after round 4: its files as they were then
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "full", killed)
    shutil.rmtree(killed / "checkpoints")
    (killed / "checkpoints").mkdir()
    shutil.copy(tmp_path / "full" / "checkpoints" / "round_00004.pt", killed / "checkpoints" / "latest.pt")
    (killed / "summary.json").unlink()
    resumed = NormObserver(2)
    train(None, killed, resume=True, observers=[resumed])
    assert resumed.seen == [6, 8] and resumed.count == 4  # continued from the saved count
    assert _metrics(killed) == _metrics(tmp_path / "full")


def test_observers_must_match_the_config_and_observe_evaluated_rounds(tmp_path):
    with pytest.raises(ConfigError, match="records the observers none"):
        train(tiny(), tmp_path / "a", observers=[NormObserver(2)])
    with pytest.raises(ConfigError, match=r"records the observers \['norm'\]"):
        train(tiny(observers={"norm": {"every": 2}}), tmp_path / "b")
    with pytest.raises(ConfigError, match="round 3 is not evaluated"):
        train(tiny(observers={"norm": {"every": 3}}), tmp_path / "c", observers=[NormObserver(3)])
    with pytest.raises(ConfigError, match="observers must map observer names"):
        tiny(observers={"norm": 3})
    assert not (tmp_path / "c" / "metrics.jsonl").exists()
