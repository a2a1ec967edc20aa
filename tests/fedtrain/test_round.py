"""federated_round alone: the hand composition of its parts, SWA start and collection, divergence, untouched inputs."""

import pytest
import torch

from fedtrain._seeds import derived_generator
from fedtrain.aggregation import aggregate
from fedtrain.client import ClientConfig, ClientShard, ClientUpdate, NonFiniteLossError, client_update
from fedtrain.config import TrainConfig
from fedtrain.models import build_model
from fedtrain.round import RoundData, aggregate_round, federated_round, plan_round
from fedtrain.server import ServerState, select_clients, server_update
from fedtrain.swa import cyclic_lr


def _shard(seed: int, n: int = 9) -> ClientShard:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    return ClientShard(images, torch.randint(0, 3, (n,), generator=g), lambda u: u.to(torch.float32) / 255.0)


def _model() -> torch.nn.Module:
    return build_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=(5,), seed=1)


def _config(**changes) -> TrainConfig:
    base = dict(dataset="synthetic", model="mlp", num_clients=4, clients_per_round=2, rounds=8, batch_size=4, lr=0.2,
                momentum=0.3, weight_decay=0.01, server_lr=0.8, server_momentum=0.5, seed=5)
    return TrainConfig(**{**base, **changes})


def _data() -> RoundData:
    return RoundData(shards=[_shard(k, n=6 + k) for k in range(4)], augment=False, worker=_model())


def _state(round: int = 0) -> ServerState:
    return ServerState(round=round, params={k: v.clone() for k, v in _model().state_dict().items()})


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("algorithm", ["fedavg", "fedasam"])
def test_a_round_equals_select_then_client_update_then_aggregate_then_server_update(algorithm):
    config, data, state = _config(algorithm=algorithm), _data(), _state(round=3)
    before = {k: v.clone() for k, v in state.params.items()}
    new, metrics = federated_round(state, config, data, 3)

    clients = select_clients(config.seed, 3, config.num_clients, config.clients_per_round)
    cfg = ClientConfig(lr=0.2, batch_size=4, weight_decay=0.01, momentum=0.3, optimizer=config.optimizer, rho=config.rho or 0.0, eta=0.2)
    updates = [client_update(_model(), before, data.shards[k], cfg, derived_generator(config.seed, "client", 3, k)) for k in clients]
    expected = server_update(state, aggregate(updates), server_lr=0.8, server_momentum=0.5)

    assert new.round == 4 and _equal(new.params, expected.params) and _equal(new.momentum, expected.momentum)
    assert new.swa_params is None and new.swa_count == 0
    assert metrics.clients == tuple(clients) and metrics.lr == 0.2
    assert metrics.num_samples == sum(data.shards[k].num_examples for k in clients)
    n = sum(u.num_examples for u in updates)
    assert metrics.train_loss == pytest.approx(sum(u.metrics["train_loss"] * u.num_examples for u in updates) / n)
    assert _equal(state.params, before) and state.round == 3  # the input state is untouched


def test_the_same_round_twice_gives_identical_states():
    config = _config(algorithm="fedsam")
    a, _ = federated_round(_state(), config, _data(), 0)
    b, _ = federated_round(_state(), config, _data(), 0)
    assert _equal(a.params, b.params) and _equal(a.momentum, b.momentum)


def test_reference_swa_starts_with_a_copy_of_the_global_model_before_the_start_round_trains():
    config = _config(swa=True, swa_start=2, swa_c=3, swa_lr=0.01, swa_collect="reference", server_momentum=0.0)
    assert not plan_round(config, 1).starts_swa
    plan = plan_round(config, 2)
    assert plan.starts_swa and not plan.collects_swa
    assert plan.lr == cyclic_lr(2, lr=0.2, swa_lr=0.01, cycle=3, start=2)
    state = _state(round=2)
    new, _ = federated_round(state, config, _data(), 2)
    assert new.swa_count == 0 and _equal(new.swa_params, state.params)  # the pre-round model, not the trained one
    assert not _equal(new.params, state.params)


def test_end_swa_collects_after_the_lowest_lr_round_of_each_cycle():
    config = _config(swa=True, swa_start=2, swa_c=3, swa_lr=0.01)
    collecting = [t for t in range(8) if plan_round(config, t).collects_swa]
    assert collecting == [2, 5] and all(plan_round(config, t).lr == 0.01 for t in collecting)
    first, _ = federated_round(_state(round=2), config, _data(), 2)
    assert first.swa_count == 1 and _equal(first.swa_params, first.params)
    second, _ = federated_round(first, config, _data(), 3)  # not a collecting round: the SWA model is carried
    assert second.swa_count == 1 and _equal(second.swa_params, first.params)


def test_without_swa_nothing_starts_or_collects():
    config = _config(swa_start=2, swa_c=1)
    assert not any(plan_round(config, t).starts_swa or plan_round(config, t).collects_swa for t in range(8))


def test_a_non_finite_mean_update_raises():
    config, state = _config(), _state()
    plan = plan_round(config, 0)
    delta = {k: torch.zeros_like(v) for k, v in state.params.items()}
    bad = dict(delta, **{"net.1.weight": torch.full_like(delta["net.1.weight"], float("nan"))})
    updates = [ClientUpdate(delta, 3, {"train_loss": 1.0}), ClientUpdate(bad, 3, {"train_loss": 1.0})]
    with pytest.raises(NonFiniteLossError, match="mean update became non-finite"):
        aggregate_round(state, config, plan, updates)


def test_the_round_index_must_be_the_states_round():
    with pytest.raises(ValueError, match=r"round_index \(2\) must be the state's round \(0\)"):
        federated_round(_state(), _config(), _data(), 2)
