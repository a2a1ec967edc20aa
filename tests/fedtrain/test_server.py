"""Server side: client sampling (same sequence for every algorithm) and the FedAvg / FedAvgM server step."""

import pytest
import torch

from fedtrain.errors import ConfigError
from fedtrain.server import ServerState, select_clients, server_update


def test_client_sampling_is_uniform_without_replacement_and_depends_only_on_seed_and_round():
    picks = [select_clients(0, t, 20, 5) for t in range(50)]
    assert all(len(set(p)) == 5 and p == sorted(p) and all(0 <= c < 20 for c in p) for p in picks)
    assert picks == [select_clients(0, t, 20, 5) for t in range(50)]  # nothing else (algorithm, history) enters
    assert len({tuple(p) for p in picks}) > 40  # rounds differ
    assert [select_clients(1, t, 20, 5) for t in range(50)] != picks  # the run seed enters
    counts = torch.bincount(torch.tensor([c for t in range(2000) for c in select_clients(3, t, 10, 3)]), minlength=10)
    assert counts.min() > 500 and counts.max() < 700  # 600 expected per client


def test_client_sampling_rejects_impossible_k():
    with pytest.raises(ValueError, match="between 1 and the number of clients"):
        select_clients(0, 0, 4, 5)


def test_fedavg_server_step_adds_the_mean_delta_and_advances_the_round():
    state = ServerState(round=3, params={"w": torch.tensor([1.0, 2.0])})
    new = server_update(state, {"w": torch.tensor([0.5, -1.0])})
    assert torch.equal(new.params["w"], torch.tensor([1.5, 1.0])) and new.round == 4 and new.momentum is None
    assert torch.equal(state.params["w"], torch.tensor([1.0, 2.0]))  # input state untouched


def test_server_momentum_follows_torch_sgd_on_the_pseudo_gradient():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.SGD([w], lr=0.7, momentum=0.9)
    state = ServerState(round=0, params={"w": w.detach().clone()})
    for delta in (torch.tensor([0.1, 0.2]), torch.tensor([-0.3, 0.05]), torch.tensor([0.2, 0.2])):
        w.grad = -delta
        opt.step()
        state = server_update(state, {"w": delta}, server_lr=0.7, server_momentum=0.9)
    assert torch.allclose(state.params["w"], w.detach(), atol=1e-7)
    assert torch.allclose(state.momentum["w"], opt.state[w]["momentum_buffer"], atol=1e-7)


def test_impossible_k_is_a_configuration_error_that_names_the_flags():
    with pytest.raises(ConfigError, match="got 0. Lower --clients-per-round or raise --num-clients"):
        select_clients(0, 0, 4, 0)
