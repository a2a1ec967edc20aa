"""BatchNorm statistics: recomputed for averaged models, frozen for SAM's second pass, reset functionally, detected."""

import torch
from torch import nn
from torch.func import functional_call

from fedtrain.batchnorm import (
    batchnorm_layers,
    cumulative_statistics,
    frozen_statistics,
    has_batchnorm,
    recompute_statistics,
    reset_statistics,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.3))


def _data(n: int = 4) -> list[torch.Tensor]:
    return [torch.randn(50, 3, generator=torch.Generator().manual_seed(i)) * 3 + 1 for i in range(n)]


def test_batchnorm_statistics_are_recomputed_and_models_without_bn_are_left_alone():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    data = [torch.randn(50, 3, generator=torch.Generator().manual_seed(i)) * 3 + 1 for i in range(4)]
    assert recompute_statistics(net, data)
    features = net[0](torch.cat(data)).detach()
    assert torch.allclose(net[1].running_mean, features.mean(0), atol=1e-5)
    assert not net.training  # mode restored
    assert not recompute_statistics(nn.Linear(3, 2), iter(()))


def test_recomputing_restores_the_momentum_and_counts_every_batch():
    net = _net()
    recompute_statistics(net, _data())
    assert net[1].momentum == 0.3 and int(net[1].num_batches_tracked) == 4 and net.training


def test_frozen_statistics_leave_running_estimates_and_counts_unchanged_but_normalise_with_the_batch():
    net = _net().train()
    net(_data(1)[0])
    before = {k: v.clone() for k, v in net[1].state_dict().items()}
    x = _data(2)[1] * 5
    with frozen_statistics(net):
        out = net(x)
    assert all(torch.equal(before[k], v) for k, v in net[1].state_dict().items())
    assert net[1].momentum == 0.3
    assert torch.allclose(out.mean(0), net[1].bias, atol=1e-5)  # batch statistics, not the running ones
    net(x)
    assert not torch.equal(before["running_mean"], net[1].running_mean)  # outside the block they move again


def test_cumulative_statistics_average_all_batches_since_the_reset():
    net = _net().train()
    net[1].reset_running_stats()
    data = _data(3)
    with cumulative_statistics(net):
        for x in data:
            net(x)
    assert net[1].momentum == 0.3
    expected = torch.stack([net[0](x).detach().mean(0) for x in data]).mean(0)
    assert torch.allclose(net[1].running_mean, expected, atol=1e-6)


def test_reset_statistics_is_the_functional_reset_running_stats():
    net = _net().train()
    net(_data(1)[0])
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    fresh = reset_statistics(buffers)
    net[1].reset_running_stats()
    assert all(torch.equal(fresh[k], v) for k, v in net.named_buffers())
    assert not torch.equal(buffers["1.running_mean"], fresh["1.running_mean"])  # the input is not modified
    params = dict(net.named_parameters())
    with torch.no_grad(), cumulative_statistics(net):
        for x in _data():
            functional_call(net, {**params, **fresh}, (x,))
    recompute_statistics(net, _data())
    assert all(torch.equal(fresh[k], v) for k, v in net.named_buffers())


def test_only_layers_that_track_statistics_count():
    assert has_batchnorm(_net()) and len(batchnorm_layers(_net())) == 1
    assert not has_batchnorm(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)))
    assert not has_batchnorm(nn.Sequential(nn.Linear(3, 4), nn.GroupNorm(2, 4)))
