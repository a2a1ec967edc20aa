"""--client-sampling reference: each round's clients drawn as the FedSAM code draws them, without global state, resumable."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.round import plan_round
from fedtrain.server import select_clients
from tests.fedtrain.test_run import train_interrupted

# Rounds 0..4 of 5 among 20 clients: np.random.seed(t); np.random.choice(20, 5, replace=False), sorted
# (computed once with NumPy 2.4 and written out, so a change in the draw fails here and not only in a comparison).
REFERENCE_20_5 = [[1, 8, 10, 18, 19], [2, 3, 6, 10, 16], [0, 4, 9, 12, 18], [1, 2, 4, 14, 17], [3, 6, 13, 18, 19]]


class _Client:
    """A stand-in for the reference's Client objects: ``np.random.choice`` draws from the list of them."""

    def __init__(self, position: int) -> None:
        self.position = position


def _reference_code_draw(round_index: int, num_clients: int, k: int) -> list[int]:
    """The FedSAM code's ``select_clients`` (models/servers/fedavg_server.py), verbatim but for the return value."""
    possible_clients = [_Client(i) for i in range(num_clients)]
    np.random.seed(round_index)
    selected = np.random.choice(possible_clients, k, replace=False)
    return sorted(c.position for c in selected)


def test_reference_sampling_gives_the_written_out_sequence_of_rounds_0_to_4():
    assert [select_clients(0, t, 20, 5, scheme="reference") for t in range(5)] == REFERENCE_20_5


def test_reference_sampling_equals_the_reference_codes_globally_seeded_draw_over_its_list_of_clients():
    state = np.random.get_state()
    try:
        for num_clients, k in ((20, 5), (100, 10), (100, 5), (7, 7)):
            for t in range(25):
                assert select_clients(0, t, num_clients, k, scheme="reference") == _reference_code_draw(t, num_clients, k)
    finally:
        np.random.set_state(state)


def test_reference_sampling_leaves_numpys_global_state_alone_and_ignores_the_seed():
    np.random.seed(1234)
    before = np.random.get_state()[1].copy()
    picks = [select_clients(seed, 3, 100, 10, scheme="reference") for seed in (0, 1, 99)]
    assert np.array_equal(np.random.get_state()[1], before)
    assert picks[0] == picks[1] == picks[2]  # the reference seeds with the round alone: every --seed, same clients
    assert select_clients(0, 3, 100, 10) != picks[0]  # the toolkit's own draw is another one


def test_the_toolkit_scheme_is_the_default_and_unchanged():
    assert [select_clients(5, t, 20, 5) for t in range(10)] == [select_clients(5, t, 20, 5, scheme="toolkit") for t in range(10)]
    # seed 0, rounds 0..2, as the code before the scheme existed (e30597c) drew them: the default stays bit-identical
    assert [select_clients(0, t, 20, 5) for t in range(3)] == [[2, 3, 5, 8, 9], [3, 5, 12, 14, 17], [0, 3, 9, 13, 14]]


def test_an_unknown_scheme_is_a_configuration_error():
    with pytest.raises(ConfigError, match="must be toolkit or reference, got 'numpy'"):
        select_clients(0, 0, 20, 5, scheme="numpy")
    with pytest.raises(ConfigError, match=r"client_sampling \(--client-sampling\) must be one of toolkit, reference, got 'x'"):
        TrainConfig(client_sampling="x")
    with pytest.raises(ConfigError, match="client_sampling .* must be a name"):
        TrainConfig.from_dict({"client_sampling": 3})


def test_a_config_without_the_key_means_toolkit_and_the_setting_round_trips():
    old = TrainConfig().to_dict()
    del old["client_sampling"]  # a config.json written before the setting existed
    assert TrainConfig.from_dict(old) == TrainConfig() and TrainConfig().client_sampling == "toolkit"
    config = TrainConfig(client_sampling="reference")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_plan_round_draws_with_the_configured_scheme():
    config = TrainConfig(num_clients=20, clients_per_round=5, client_sampling="reference", seed=7)
    assert [list(plan_round(config, t).clients) for t in range(5)] == REFERENCE_20_5
    assert list(plan_round(config.replace(client_sampling="toolkit"), 0).clients) == select_clients(7, 0, 20, 5)


def test_a_reference_sampled_run_trains_those_clients_and_resumes_exactly(tmp_path):
    from fedtrain.checkpoint import load_checkpoint
    from fedtrain.run import TIMING_FIELDS, train

    torch.set_num_threads(1)
    config = TrainConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, num_clients=8, samples_per_client=30,
                         clients_per_round=3, rounds=6, batch_size=16, lr=0.05, eval_every=3, checkpoint_every=2, seed=4,
                         client_sampling="reference", device="cpu")
    events: list[dict] = []
    train(config, tmp_path / "full", progress=events.append)
    assert [list(e["clients"]) for e in events] == [_reference_code_draw(t, 8, 3) for t in range(6)]

    train_interrupted(config, tmp_path / "cut", after_round=5)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "latest.pt").round == 4  # really interrupted mid-run
    train(None, tmp_path / "cut", resume=True)
    a = load_checkpoint(tmp_path / "cut" / "checkpoints" / "final.pt")
    b = load_checkpoint(tmp_path / "full" / "checkpoints" / "final.pt")
    assert a.round == b.round == 6
    for name in b.weights:
        assert torch.equal(a.weights[name], b.weights[name])

    def metrics(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]

    assert metrics(tmp_path / "cut") == metrics(tmp_path / "full") and len(metrics(tmp_path / "full")) == 2
    assert json.loads((tmp_path / "full" / "config.json").read_text())["client_sampling"] == "reference"


def test_landscape_train_takes_the_flag(tmp_path):
    from fedlandscape_cli import main

    result = CliRunner().invoke(main, ["train", "--dataset", "synthetic", "--model", "mlp", "--num-clients", "6",
                                      "--samples-per-client", "20", "--clients-per-round", "2", "--rounds", "1",
                                      "--batch-size", "10", "--eval-every", "1", "--threads", "1", "--device", "cpu",
                                      "--client-sampling", "reference", "--quiet", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["client_sampling"] == "reference"
    bad = CliRunner().invoke(main, ["train", "--client-sampling", "numpy", "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "'numpy' is not one of 'toolkit', 'reference'" in bad.output
