"""fedtrain.flower.server_app: a Flower simulation (Ray backend) of FedAvg, FedSAM and FedASAM+SWA ends bit-identical to the native engine.

One Ray simulation for the three (Flower 1.27 has no lighter backend, and Ray's start-up dominates a tiny run);
``train_flower`` itself runs through Ray in ``tests/cli/test_train_flower.py``. Every client is a virtual
SuperNode and one one-CPU ClientApp runs at a time, so the client updates run in Ray's
worker processes in the same one-thread arithmetic as the native run, and the server sums them in the plan's
client order: the global, SWA and momentum tensors are equal bit for bit, and so are the metrics.
"""

from __future__ import annotations

import pytest
from flwr.app import Context, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from fedtrain.errors import ConfigError
from fedtrain.flower.client_app import make_client_app
from fedtrain.flower.server_app import flower_round_fn, make_server_app, simulation_backend, train_flower
from fedtrain.run import train
from tests.fedtrain.flower.conftest import LocalGrid, assert_same_run, tiny

ALGORITHMS = {
    "fedavg": dict(algorithm="fedavg", rounds=3),
    "fedsam": dict(algorithm="fedsam", rounds=3, server_momentum=0.5),
    "fedasam-swa": dict(algorithm="fedasam", swa=True, swa_start=0.5, swa_c=2, rounds=4),
}


def test_one_flower_simulation_of_the_three_algorithms_equals_the_native_engine(tmp_path):
    """One simulation (one Ray start) whose ServerApp trains the three runs one after the other on the same SuperNodes."""
    configs = {name: tiny(**changes) for name, changes in ALGORITHMS.items()}
    outcomes = []
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        for name, config in configs.items():
            outcomes.append(train(config, tmp_path / name / "flower", round_fn=flower_round_fn(grid)))

    run_simulation(server_app=app, client_app=make_client_app(), num_supernodes=6, backend_config=simulation_backend(total_cpus=1))
    assert len(outcomes) == len(configs)
    for (name, config), flower in zip(configs.items(), outcomes):
        native = train(config, tmp_path / name / "native")
        assert_same_run(tmp_path / name / "native", tmp_path / name / "flower")
        assert _untimed(flower) == _untimed(native)


def _untimed(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("wall_seconds", "rounds_per_second", "final_checkpoint")}


def test_too_few_supernodes_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ConfigError, match=r"num_supernodes \(4\) must be at least num_clients \(6\)"):
        train_flower(tiny(), tmp_path / "run", num_supernodes=4)
    assert not (tmp_path / "run").exists()


def test_the_server_apps_errors_are_kept_for_the_caller(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("x")
    app, outcome = make_server_app(tiny(), tmp_path / "run")
    app(LocalGrid(make_client_app(), 6), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}))
    assert isinstance(outcome.error, ConfigError) and "already exists and is not empty" in str(outcome.error)
    assert outcome.summary is None and (tmp_path / "run" / "mine.txt").read_text() == "x"


def test_simulation_backend_settings():
    backend = simulation_backend(total_cpus=1)
    assert backend["client_resources"] == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert backend["init_args"]["num_cpus"] == 1 and backend["init_args"]["include_dashboard"] is False
