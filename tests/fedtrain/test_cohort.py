"""Cohort-vectorised local training equals the sequential reference: per client, per round, with unequal shards, chunked, resumed."""

import json

import pytest
import torch
from torch import nn

from fedtrain._seeds import derived_generator
from fedtrain.client import ClientConfig, ClientShard, client_update
from fedtrain.cohort import (
    CohortSettings,
    _perturbation,
    cohort_bytes_per_client,
    cohort_chunk,
    cohort_record,
    cohort_settings,
    cohort_update,
    resolve_cohort_mode,
    vmap_unsupported,
)
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.models import build_model
from fedtrain.round import RoundData, federated_round
from fedtrain.sam import weight_mask
from fedtrain.server import ServerState
from tests.fedtrain.test_run import _one_thread  # noqa: F401 (autouse fixture: one torch thread, restored)
from tests.fedtrain.test_run import train_interrupted

# Measured on this CPU (float32, 1 thread, torch 2.13): the largest |vmap - sequential| over every weight after the
# 4 rounds of test_vmap_rounds_equal_sequential_rounds_after_four_rounds was 3.0e-8 (FedAvg), 3.0e-8 (FedSAM),
# 6.0e-8 (FedASAM), 3.0e-8 (FedASAM + SWA, SWA model 3.0e-8), for weights up to ~0.5 in size: float32 rounding.
# TOL_ROUNDS leaves a margin of > 100x over it.
TOL_ROUNDS = 1e-5
# float64: the two paths compute the same formulas in another summation order, so they agree to ~1e-16.
TOL_FLOAT64 = 1e-12


def _shard(seed: int, n: int, shape=(1, 4, 4), scale: float = 1.0, dtype=torch.float32) -> ClientShard:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return ClientShard(images, torch.randint(0, 3, (n,), generator=g), lambda u: (u.to(dtype) / 255.0 - 0.5) * scale)


def _mlp(dtype=torch.float32) -> nn.Module:
    return build_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=(5,), seed=1).to(dtype)


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _generators(n: int, round_index: int = 0) -> list:
    return [derived_generator(3, "client", round_index, k) for k in range(n)]


def _both(shards, cfg, model_fn=_mlp, settings=CohortSettings(mode="vmap")):
    """(sequential updates, vmap updates) of ``shards`` from the same global state with the same generators."""
    state = _state(model_fn())
    seq = [client_update(model_fn(), state, s, cfg, g) for s, g in zip(shards, _generators(len(shards)))]
    vec = cohort_update(model_fn(), state, shards, cfg, _generators(len(shards)), settings)
    return seq, vec


# --- one cohort: the same updates as client_update -------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "asam"])
def test_float64_cohort_equals_client_update_with_unequal_shards_momentum_weight_decay_and_two_epochs(optimizer):
    # Shards of 6..9 samples with batches of 4: last batches of 2, 3, 4, 1 rows (masked padded steps) and
    # 2 or 3 steps an epoch, so a client with fewer steps sits out the cohort's last step of each epoch.
    shards = [_shard(k, 6 + k, dtype=torch.float64) for k in range(4)]
    cfg = ClientConfig(lr=0.3, local_epochs=2, batch_size=4, weight_decay=0.01, momentum=0.5, optimizer=optimizer, rho=0.2, eta=0.1)
    seq, vec = _both(shards, cfg, model_fn=lambda: _mlp(torch.float64))
    for s, v in zip(seq, vec):
        assert _max_diff(s.delta, v.delta) < TOL_FLOAT64
        assert max(float(t.abs().max()) for t in s.delta.values()) > 1e-3  # the clients did train
        assert v.num_examples == s.num_examples
        assert v.metrics["steps"] == s.metrics["steps"]
        assert v.metrics["train_loss"] == pytest.approx(s.metrics["train_loss"], abs=TOL_FLOAT64)
    assert sorted({v.metrics["steps"] for v in vec}) == [4.0, 6.0]


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, TOL_FLOAT64), (torch.float32, TOL_ROUNDS)])
@pytest.mark.parametrize("optimizer", ["sgd", "asam"])
def test_a_cohort_of_the_paper_cnn_with_augmentation_matches_client_update(optimizer, dtype, tolerance):
    # Convolutions with one weight per client run as grouped convolutions under vmap: in float64 the two
    # paths agree to ~1e-17 (the same formulas), in float32 to rounding.
    shards = [_shard(k, 20 + k, shape=(3, 16, 16), dtype=dtype) for k in range(3)]
    cfg = ClientConfig(lr=0.05, batch_size=8, weight_decay=4e-4, optimizer=optimizer, rho=0.5, eta=0.2, augment=True)
    seq, vec = _both(shards, cfg, model_fn=lambda: build_model("cnn", input_shape=(3, 16, 16), num_classes=3, seed=2).to(dtype))
    for s, v in zip(seq, vec):
        assert _max_diff(s.delta, v.delta) < tolerance
        assert max(float(t.abs().max()) for t in s.delta.values()) > 1e-3


def test_the_global_state_and_the_worker_are_not_modified():
    worker, state = _mlp(), _state(_mlp())
    before_state, before_worker = _state(_mlp()), _state(worker)
    cohort_update(worker, state, [_shard(0, 5), _shard(1, 7)], ClientConfig(lr=0.5, batch_size=2, momentum=0.9), _generators(2))
    assert _max_diff(state, before_state) == 0 and _max_diff(_state(worker), before_worker) == 0


# --- SAM / ASAM: one norm per client ----------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sam", "asam"])
def test_each_clients_perturbation_has_its_own_norm(optimizer):
    # Two clients whose gradients differ by a factor 1e4: each perturbation is rho long in its own
    # (T-scaled) norm; a norm across clients would shrink the small client's step by ~1e4.
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(2, 3, 4, generator=g), torch.randn(2, 4, generator=g)]
    grads = [torch.randn(2, 3, 4, generator=g), torch.randn(2, 4, generator=g)]
    grads = [t * torch.tensor([1.0, 1e4]).view(2, *[1] * (t.dim() - 1)) for t in grads]
    cfg = ClientConfig(lr=0.1, optimizer=optimizer, rho=0.3, eta=0.2)
    mask = weight_mask(["fc.weight", "fc.bias"])
    eps = torch.func.vmap(lambda p, gr: _perturbation(p, gr, cfg, mask))(params, grads)
    for k in range(2):
        t = [p[k].abs() + cfg.eta if is_w and optimizer == "asam" else torch.ones_like(p[k]) for p, is_w in zip(params, mask)]
        norm = torch.linalg.vector_norm(torch.cat([(e[k] / tk).flatten() for e, tk in zip(eps, t)]))
        assert float(norm) == pytest.approx(cfg.rho, rel=1e-5)


def _linear() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def _gradient_norm(model: nn.Module, shard: ClientShard) -> float:
    loss = nn.functional.cross_entropy(model(shard.normalize(shard.images)), shard.labels)
    return float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])))


@pytest.mark.parametrize("optimizer", ["sam", "asam"])
def test_a_client_trains_the_same_next_to_a_client_with_a_ten_thousand_times_larger_gradient(optimizer):
    # A linear model: inputs 1e4 times larger give gradients ~1e4 times larger (checked below).
    quiet, loud = _shard(0, 8), _shard(1, 8, scale=1e4)
    assert _gradient_norm(_linear(), loud) > 1e3 * _gradient_norm(_linear(), quiet)
    cfg = ClientConfig(lr=1e-6, batch_size=4, optimizer=optimizer, rho=0.5, eta=0.2)
    state = _state(_linear())
    together = cohort_update(_linear(), state, [quiet, loud], cfg, _generators(2))
    for k, shard in enumerate([quiet, loud]):
        alone = client_update(_linear(), state, shard, cfg, _generators(2)[k])
        assert _max_diff(alone.delta, together[k].delta) < 1e-3 * max(float(t.abs().max()) for t in alone.delta.values())
    # A norm across both clients would shrink the quiet client's perturbation ~1e4 times, i.e. nearly rho = 0:
    # that update is far outside the tolerance above.
    no_ascent = client_update(_linear(), state, quiet, ClientConfig(lr=1e-6, batch_size=4), _generators(2)[0])
    quiet_alone = client_update(_linear(), state, quiet, cfg, _generators(2)[0])
    assert _max_diff(no_ascent.delta, quiet_alone.delta) > 0.1 * max(float(t.abs().max()) for t in quiet_alone.delta.values())


# --- chunks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_chunk", [1, 2, 3])
def test_chunked_cohorts_give_the_updates_of_the_whole_cohort(max_chunk):
    shards = [_shard(k, 6 + k) for k in range(5)]
    cfg = ClientConfig(lr=0.3, batch_size=4, momentum=0.5, optimizer="asam", rho=0.2, eta=0.1)
    _, whole = _both(shards, cfg)
    seq, chunked = _both(shards, cfg, settings=CohortSettings(mode="vmap", max_chunk=max_chunk))
    for w, c, s in zip(whole, chunked, seq):
        assert _max_diff(w.delta, c.delta) < TOL_ROUNDS and _max_diff(s.delta, c.delta) < TOL_ROUNDS


def test_chunk_size_is_the_setting_or_the_whole_cohort_on_cpu_or_what_fits_in_half_the_free_gpu_memory(monkeypatch):
    never = lambda: pytest.fail("the memory estimate is needed on CUDA without a setting only")  # noqa: E731
    assert cohort_chunk(5, 2, device=torch.device("cpu"), bytes_per_client=never) == 2
    assert cohort_chunk(5, 9, device=torch.device("cuda"), bytes_per_client=never) == 5
    assert cohort_chunk(5, 0, device=torch.device("cpu"), bytes_per_client=never) == 5
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1000, 4000))
    assert cohort_chunk(5, 0, device=torch.device("cuda"), bytes_per_client=lambda: 150) == 3  # 500 // 150
    assert cohort_chunk(5, 0, device=torch.device("cuda"), bytes_per_client=lambda: 10**6) == 1  # never 0
    assert cohort_chunk(5, 0, device=torch.device("cuda"), bytes_per_client=lambda: 1) == 5


def test_the_memory_estimate_counts_parameter_copies_and_batch_activations():
    model = _mlp()  # 16 -> 5 -> 3: 85 + 18 = 103 parameters; activations of one sample: 16 + 16 + 5 + 5 + 3 = 45
    sample = torch.zeros(1, 1, 4, 4)
    assert cohort_bytes_per_client(model, sample, ClientConfig(lr=0.1, batch_size=8)) == 4 * (3 * 103 + 3 * 45 * 8)
    assert cohort_bytes_per_client(model, sample, ClientConfig(lr=0.1, batch_size=8, optimizer="sam")) == 4 * (5 * 103 + 3 * 45 * 8)


# --- whole rounds, the mode setting and its record -------------------------------------------------------


def _config(**changes) -> TrainConfig:
    base = dict(dataset="synthetic", model="mlp", num_clients=6, clients_per_round=3, rounds=4, batch_size=4, lr=0.2,
                momentum=0.3, weight_decay=0.01, server_lr=0.8, server_momentum=0.5, seed=5)
    return TrainConfig(**{**base, **changes})


def _rounds(config: TrainConfig, shards) -> ServerState:
    data = RoundData(shards=shards, augment=False, worker=_mlp())
    state = ServerState(round=0, params=_state(_mlp()))
    for t in range(config.rounds):
        state, _ = federated_round(state, config, data, t)
    return state


@pytest.mark.parametrize("changes", [
    dict(algorithm="fedavg"),
    dict(algorithm="fedsam"),
    dict(algorithm="fedasam"),
    dict(algorithm="fedasam", swa=True, swa_start=1, swa_c=2, swa_lr=0.01),
], ids=["fedavg", "fedsam", "fedasam", "fedasam-swa"])
def test_vmap_rounds_equal_sequential_rounds_after_four_rounds(changes):
    shards = [_shard(k, 6 + k) for k in range(6)]  # unequal shards: masked padded steps
    seq = _rounds(_config(cohort="sequential", **changes), shards)
    vec = _rounds(_config(cohort="vmap", **changes), shards)
    assert _max_diff(seq.params, vec.params) < TOL_ROUNDS
    assert _max_diff(seq.momentum, vec.momentum) < TOL_ROUNDS
    assert _max_diff(seq.params, _state(_mlp())) > 1e-2  # the model moved
    if changes.get("swa"):
        assert vec.swa_count == seq.swa_count > 0 and _max_diff(seq.swa_params, vec.swa_params) < TOL_ROUNDS


def test_auto_is_vmap_on_cuda_and_sequential_on_cpu_and_on_models_with_buffers():
    assert resolve_cohort_mode("auto", torch.device("cpu"), _mlp()) == "sequential"
    assert resolve_cohort_mode("auto", torch.device("cuda"), _mlp()) == "vmap"
    assert resolve_cohort_mode("vmap", torch.device("cpu"), _mlp()) == "vmap"
    assert resolve_cohort_mode("sequential", torch.device("cuda"), _mlp()) == "sequential"
    with_bn = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.BatchNorm1d(4))
    assert "buffers" in vmap_unsupported(with_bn) and vmap_unsupported(_mlp()) is None
    assert resolve_cohort_mode("auto", torch.device("cuda"), with_bn) == "sequential"
    with pytest.raises(ConfigError, match="cannot train this model: the model has buffers .*--cohort sequential"):
        resolve_cohort_mode("vmap", torch.device("cpu"), with_bn)
    with pytest.raises(ConfigError, match="cannot train this model"):
        cohort_update(with_bn, _state(with_bn), [_shard(0, 4)], ClientConfig(lr=0.1), _generators(1))
    assert cohort_settings(_config(cohort="vmap", cohort_chunk=2), _mlp()) == CohortSettings("vmap", 2, False)


def test_bad_cohort_settings_are_refused_with_the_flag_to_fix():
    with pytest.raises(ConfigError, match=r"cohort \(--cohort\) must be one of auto, sequential, vmap, got 'gpu'"):
        _config(cohort="gpu")
    with pytest.raises(ConfigError, match=r"cohort_chunk \(--cohort-chunk\) must be an integer >= 0"):
        _config(cohort_chunk=-1)
    with pytest.raises(ConfigError, match="cohort_compile"):
        _config(cohort_compile="yes")
    with pytest.raises(ConfigError, match="resolve 'auto' first"):
        CohortSettings(mode="auto")
    with pytest.raises(ConfigError, match="one generator per shard"):
        cohort_update(_mlp(), _state(_mlp()), [_shard(0, 4)], ClientConfig(lr=0.1), [])
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        cohort_update(_mlp(), _state(_mlp()), [_shard(0, 4)], ClientConfig(lr=0.1, optimizer="adam"), _generators(1))


def test_the_record_says_the_mode_and_whether_steps_are_padded():
    vmap = CohortSettings(mode="vmap", max_chunk=4)
    assert cohort_record(vmap, [500] * 5) == {"mode": "vmap", "max_chunk": 4, "compile": False, "unequal_steps": "none"}
    assert cohort_record(vmap, [500, 499])["unequal_steps"] == "masked-padding"
    assert cohort_record(vmap, [64, 128])["unequal_steps"] == "masked-padding"
    assert cohort_record(CohortSettings(), [500, 499])["unequal_steps"] == "n/a"
    assert json.loads(json.dumps(cohort_record(vmap, [3]))) == cohort_record(vmap, [3])


# --- a whole run in vmap mode -------------------------------------------------------------------------


def test_a_vmap_run_records_its_mode_and_an_interrupted_one_resumes_bit_identical(tmp_path):
    from fedtrain.checkpoint import load_checkpoint
    from fedtrain.run import TIMING_FIELDS, train

    config = TrainConfig(dataset="synthetic", model="mlp", num_clients=6, samples_per_client=60, clients_per_round=3,
                         rounds=6, batch_size=16, lr=0.05, momentum=0.5, algorithm="fedasam", swa=True, swa_start=2, swa_c=2,
                         eval_every=3, checkpoint_every=2, seed=3, cohort="vmap", device="cpu")
    summary = train(config, tmp_path / "full")
    assert summary["cohort_used"] == {"mode": "vmap", "max_chunk": 0, "compile": False, "unequal_steps": "none"}
    assert json.loads((tmp_path / "full" / "config.json").read_text())["cohort"] == "vmap"

    train_interrupted(config, tmp_path / "cut", after_round=5)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "latest.pt").round == 4  # really interrupted mid-run
    train(None, tmp_path / "cut", resume=True)

    a = load_checkpoint(tmp_path / "cut" / "checkpoints" / "final.pt")
    b = load_checkpoint(tmp_path / "full" / "checkpoints" / "final.pt")
    assert a.round == b.round == 6 and a.swa_count == b.swa_count > 0
    for name in b.weights:
        assert torch.equal(a.weights[name], b.weights[name]) and torch.equal(a.swa_weights[name], b.swa_weights[name])

    def metrics(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]

    assert metrics(tmp_path / "cut") == metrics(tmp_path / "full") and len(metrics(tmp_path / "full")) == 2
    sequential = train(config.replace(cohort="sequential"), tmp_path / "sequential")
    assert sequential["cohort_used"]["mode"] == "sequential"
    assert sequential["final_accuracy"] == pytest.approx(summary["final_accuracy"], abs=0.02)


def test_cohort_compile_wraps_the_vectorised_step_in_torch_compile(monkeypatch):
    # A real compilation takes minutes on this CPU (bench/results/cohort-cpu.txt); here the wiring is checked
    # with a torch.compile that records its calls and returns the function unchanged.
    calls = []

    def fake_compile(fn, **options):
        calls.append(options)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    shards, cfg = [_shard(k, 6 + k) for k in range(3)], ClientConfig(lr=0.3, batch_size=4, optimizer="sam", rho=0.2)
    plain = cohort_update(_mlp(), _state(_mlp()), shards, cfg, _generators(3))
    assert calls == []
    compiled = cohort_update(_mlp(), _state(_mlp()), shards, cfg, _generators(3), CohortSettings("vmap", 0, True))
    assert calls == [{"dynamic": False}, {"dynamic": False}]  # the unmasked and the masked step
    assert all(_max_diff(a.delta, b.delta) == 0 for a, b in zip(plain, compiled))


def test_a_run_recorded_before_the_cohort_setting_resumes_sequential_and_a_new_one_keeps_its_mode(tmp_path):
    from fedtrain.run import load_run_config

    old = _config().to_dict()
    del old["cohort"]  # a config.json written before the setting existed: its rounds ran one client after another
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert load_run_config(tmp_path).cohort == "sequential"
    (tmp_path / "config.json").write_text(json.dumps(_config().to_dict()))
    assert load_run_config(tmp_path).cohort == "auto"


def test_a_diverging_client_in_the_cohort_raises_the_non_finite_loss_error():
    from fedtrain.client import NonFiniteLossError

    good, bad = _shard(0, 8), _shard(1, 8)
    bad = ClientShard(bad.images, bad.labels, lambda u: u.to(torch.float32) * float("nan"))  # a NaN loss at once
    with pytest.raises(NonFiniteLossError, match=r"non-finite \(nan\) .* Lower the learning rate"):
        cohort_update(_mlp(), _state(_mlp()), [good, bad], ClientConfig(lr=0.1, batch_size=4), _generators(2))
