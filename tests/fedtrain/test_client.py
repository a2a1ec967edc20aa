"""client_update: local SGD equals a hand-written loop, SAM costs two passes, determinism, divergence."""

import pytest
import torch
from torch.nn import functional as F

from fedtrain.client import ClientConfig, ClientShard, NonFiniteLossError, _batches, client_update
from fedtrain.data import Normalize, augment_batch
from fedtrain.errors import ConfigError
from fedtrain.models import build_model


def _shard(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 3, (n,), generator=g)
    return ClientShard(images, labels, lambda u: u.to(torch.float32) / 255.0)


def _model():
    return build_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=(5,), seed=1)


def test_sgd_client_equals_a_plain_loop_over_the_same_batches():
    shard, cfg = _shard(), ClientConfig(lr=0.3, local_epochs=2, batch_size=4, weight_decay=0.01, momentum=0.5)
    global_state = {k: v.clone() for k, v in _model().state_dict().items()}
    update = client_update(_model(), global_state, shard, cfg, torch.Generator().manual_seed(7))

    reference = _model()
    opt = torch.optim.SGD(reference.parameters(), lr=0.3, weight_decay=0.01, momentum=0.5)
    g = torch.Generator().manual_seed(7)
    for _ in range(2):
        order = torch.randperm(10, generator=g)
        for start in range(0, 10, 4):  # batches of 4, 4, 2: the last partial batch is kept
            idx = order[start : start + 4]
            opt.zero_grad()
            F.cross_entropy(reference(shard.normalize(shard.images[idx])), shard.labels[idx]).backward()
            opt.step()
    for name, value in reference.state_dict().items():
        assert torch.equal(global_state[name] + update.delta[name], value) or torch.allclose(
            global_state[name] + update.delta[name], value, atol=1e-7
        )
    assert update.num_examples == 10 and update.metrics["steps"] == 6


def test_client_update_does_not_modify_the_global_state_and_is_deterministic():
    shard, cfg = _shard(), ClientConfig(lr=0.1, batch_size=3, optimizer="asam", rho=0.5, eta=0.2)
    global_state = {k: v.clone() for k, v in _model().state_dict().items()}
    before = {k: v.clone() for k, v in global_state.items()}
    a = client_update(_model(), global_state, shard, cfg, torch.Generator().manual_seed(3))
    b = client_update(_model(), global_state, shard, cfg, torch.Generator().manual_seed(3))
    c = client_update(_model(), global_state, shard, cfg, torch.Generator().manual_seed(4))
    assert all(torch.equal(global_state[k], before[k]) for k in before)
    assert all(torch.equal(a.delta[k], b.delta[k]) for k in a.delta)
    assert not all(torch.equal(a.delta[k], c.delta[k]) for k in a.delta)  # another seed, another data order


def test_sam_client_runs_two_forward_passes_per_step_and_differs_from_sgd():
    shard = _shard()
    calls = []
    model = _model()
    model.register_forward_hook(lambda *args: calls.append(1))
    global_state = {k: v.clone() for k, v in _model().state_dict().items()}
    sam = client_update(model, global_state, shard, ClientConfig(lr=0.5, batch_size=5, optimizer="sam", rho=0.5), torch.Generator().manual_seed(0))
    assert len(calls) == 4  # 2 batches x 2 passes
    sgd = client_update(_model(), global_state, shard, ClientConfig(lr=0.5, batch_size=5), torch.Generator().manual_seed(0))
    assert not torch.allclose(sam.delta["net.1.weight"], sgd.delta["net.1.weight"])
    # SAM with rho = 0 is SGD exactly
    sam0 = client_update(_model(), global_state, shard, ClientConfig(lr=0.5, batch_size=5, optimizer="sam", rho=0.0), torch.Generator().manual_seed(0))
    assert all(torch.equal(sam0.delta[k], sgd.delta[k]) for k in sgd.delta)


def test_a_diverging_client_raises_a_clear_error():
    shard = _shard()
    global_state = {k: v.clone() for k, v in _model().state_dict().items()}
    global_state["net.1.weight"] = global_state["net.1.weight"] * float("nan")
    with pytest.raises(NonFiniteLossError, match="Lower the learning rate"):
        client_update(_model(), global_state, shard, ClientConfig(lr=0.1), torch.Generator().manual_seed(0))


def test_sam_clients_count_each_step_once_in_batchnorm_statistics():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3))
    global_state = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = ClientConfig(lr=0.1, batch_size=4, optimizer="sam", rho=0.5)
    update = client_update(net, global_state, _shard(), cfg, torch.Generator().manual_seed(0))
    assert int(update.delta["2.num_batches_tracked"]) == update.metrics["steps"] == 3  # the perturbed pass is not counted
    assert net[2].momentum == 0.1  # restored after every second pass


def test_an_unknown_local_optimizer_is_a_configuration_error():
    global_state = {k: v.clone() for k, v in _model().state_dict().items()}
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, sam, asam, got 'adam'"):
        client_update(_model(), global_state, _shard(), ClientConfig(lr=0.1, optimizer="adam"), torch.Generator().manual_seed(0))


def _reference_batches(shard, cfg, generator):
    """The batching before the device path: per batch, one augment_batch call drawing from the generator."""
    n = shard.num_examples
    for _ in range(cfg.local_epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            images = shard.images[idx]
            if cfg.augment:
                images = augment_batch(images, generator)
            yield shard.normalize(images), shard.labels[idx]


def _indexed(shard, device, spare=7):
    """The same client as rows of a larger dataset held on ``device`` (as a run holds it)."""
    g = torch.Generator().manual_seed(99)
    others = torch.randint(0, 256, (spare, *shard.images.shape[1:]), generator=g, dtype=torch.uint8)
    images = torch.cat([others, shard.images]).to(device)
    labels = torch.cat([torch.zeros(spare, dtype=torch.int64), shard.labels]).to(device)
    rows = torch.arange(spare, spare + shard.num_examples, device=device)
    return ClientShard(images, labels, Normalize(torch.tensor(0.0, device=device), torch.tensor(1.0, device=device)), indices=rows)


@pytest.mark.parametrize("augment", [False, True])
def test_batches_on_a_device_are_the_cpu_batches_of_the_same_generator(device, augment):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 6, 6), generator=g, dtype=torch.uint8)
    shard = ClientShard(images, torch.randint(0, 3, (10,), generator=g), lambda u: u.to(torch.float32) / 255.0)
    cfg = ClientConfig(lr=0.1, local_epochs=2, batch_size=4, augment=augment)
    expected = list(_reference_batches(shard, cfg, torch.Generator().manual_seed(7)))
    for candidate in (shard, _indexed(shard, device)):
        got = list(_batches(candidate, cfg, torch.Generator().manual_seed(7)))
        assert [y.numel() for _, y in got] == [4, 4, 2, 4, 4, 2]
        for (x, y), (x_ref, y_ref) in zip(got, expected, strict=True):
            assert torch.equal(y.cpu(), y_ref)
            torch.testing.assert_close(x.cpu(), x_ref, rtol=0, atol=1e-6)  # one pixel step is 1/255


def test_a_client_indexing_the_dataset_on_a_device_trains_as_one_holding_its_copy(device):
    shard, cfg = _shard(), ClientConfig(lr=0.3, local_epochs=2, batch_size=4, optimizer="asam", rho=0.5, eta=0.2)
    global_state = {k: v.clone() for k, v in _model().state_dict().items()}
    copy = client_update(_model(), global_state, shard, cfg, torch.Generator().manual_seed(3))
    on_device = client_update(_model().to(device), {k: v.to(device) for k, v in global_state.items()}, _indexed(shard, device),
                              cfg, torch.Generator().manual_seed(3))
    assert on_device.num_examples == copy.num_examples and on_device.metrics["steps"] == copy.metrics["steps"]
    for name, delta in copy.delta.items():
        assert on_device.delta[name].device.type == device.type
        if device.type == "cpu":
            assert torch.equal(on_device.delta[name], delta)
        else:
            torch.testing.assert_close(on_device.delta[name].cpu(), delta, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="counts CUDA synchronisations; needs a GPU")
@pytest.mark.parametrize("optimizer", ["sgd", "sam", "asam"])
def test_a_cuda_client_synchronises_per_epoch_and_per_client_not_per_step(optimizer):
    import warnings

    def syncs(batch_size: int) -> int:
        cuda = torch.device("cuda")
        shard = _indexed(_shard(n=24), cuda)
        model = _model().to(cuda)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        cfg = ClientConfig(lr=0.1, local_epochs=2, batch_size=batch_size, optimizer=optimizer, rho=0.5, eta=0.2, augment=True)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                client_update(model, state, shard, cfg, torch.Generator().manual_seed(0))
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchronizing" in str(w.message) for w in caught)

    few, many = syncs(batch_size=12), syncs(batch_size=2)  # 2 vs 12 steps per epoch
    assert few == many <= 2 + 1  # one draw transfer per epoch, one loss read per client
