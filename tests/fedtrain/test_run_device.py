"""train() on each device: the same files and keys, CPU checkpoints, exact resumes, the device recorded; CUDA vs CPU."""

import json

import pytest
import torch

from fedtrain._numerics import run_numerics
from fedtrain.checkpoint import load_checkpoint
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.io import read_json
from fedtrain.run import TIMING_FIELDS, train
from tests.conftest import write_cifar
from tests.fedtrain.test_run import train_interrupted

# On CUDA, one round of the tiny CNN below agrees with the CPU to float32 rounding (TF32 is off in train):
# a few SGD/SAM steps change the weights by ~1e-2, and kernel summation order moves them by ~1e-7.
CUDA_VS_CPU = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**changes) -> TrainConfig:
    base = dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, partition="dirichlet", alpha=0.5,
                num_clients=6, samples_per_client=40, clients_per_round=3, rounds=6, batch_size=16, lr=0.1,
                eval_every=2, last_k=2, seed=3, algorithm="fedasam", server_momentum=0.5, swa=True, swa_start=0.5,
                swa_c=2, checkpoint_every=2)
    return TrainConfig(**{**base, **changes})


def files(run) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*"))


def metrics_without_timing(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def tensors(ckpt) -> dict[str, torch.Tensor]:
    out = {f"w.{k}": v for k, v in ckpt.weights.items()}
    out.update({f"swa.{k}": v for k, v in (ckpt.swa_weights or {}).items()})
    out.update({f"m.{k}": v for k, v in (ckpt.state.get("server_momentum") or {}).items()})
    return out


def test_a_run_on_each_device_writes_the_cpu_runs_files_and_keys_and_cpu_checkpoints(tmp_path, device):
    reference = train(tiny(device="cpu"), tmp_path / "cpu")
    tf32_before = torch.backends.cudnn.allow_tf32
    tf32_during = []
    summary = train(tiny(device=device.type), tmp_path / "dev", progress=lambda _: tf32_during.append(torch.backends.cudnn.allow_tf32))
    assert set(tf32_during) == {tf32_before if device.type == "cpu" else False}  # float32 is float32 on a GPU
    assert torch.backends.cudnn.allow_tf32 == tf32_before
    run = tmp_path / "dev"
    assert files(run) == files(tmp_path / "cpu")
    assert summary.keys() == reference.keys() and read_json(run / "summary.json") == json.loads(json.dumps(summary))
    assert read_json(run / "config.json")["device"] == device.type  # the spec, as given
    assert summary["device_used"]["device"].split(":")[0] == device.type  # what it resolved to
    assert [m.keys() for m in metrics_without_timing(run)] == [m.keys() for m in metrics_without_timing(tmp_path / "cpu")]

    ckpt = load_checkpoint(run / "checkpoints" / "final.pt")  # onto the CPU by default
    assert ckpt.state.keys() == load_checkpoint(tmp_path / "cpu" / "checkpoints" / "final.pt").state.keys()
    assert ckpt.state["device_used"] == summary["device_used"]
    assert ckpt.has_swa and all(t.device.type == "cpu" for t in tensors(ckpt).values())
    raw = torch.load(run / "checkpoints" / "latest.pt", map_location=None, weights_only=True)  # as written
    assert all(t.device.type == "cpu" for t in raw["weights"].values())
    assert ckpt.build_model()(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    on_device = load_checkpoint(run / "checkpoints" / "final.pt", map_location=device)
    assert all(t.device.type == device.type for t in tensors(on_device).values())


def test_resume_on_the_same_device_is_exact(tmp_path, device):
    # Bit-identical on the CPU; on CUDA with deterministic kernels (without, the backward of some kernels may
    # sum in a varying order and a resume agrees only to rounding).
    config = tiny(device=device.type, deterministic=device.type == "cuda", rounds=8)

    train_interrupted(config, tmp_path / "killed", after_round=5)
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "latest.pt").round == 4
    train(None, tmp_path / "killed", resume=True)
    train(config, tmp_path / "full")
    a = tensors(load_checkpoint(tmp_path / "killed" / "checkpoints" / "final.pt"))
    b = tensors(load_checkpoint(tmp_path / "full" / "checkpoints" / "final.pt"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    assert metrics_without_timing(tmp_path / "killed") == metrics_without_timing(tmp_path / "full")


def test_the_device_may_change_on_resume_and_is_recorded(tmp_path):
    train(tiny(device="cpu", rounds=4), tmp_path / "run")
    summary = train(tiny(device="auto", rounds=4), tmp_path / "run", resume=True)  # not refused as a changed setting
    assert read_json(tmp_path / "run" / "config.json")["device"] == "auto"
    assert summary["device_used"]["device"].split(":")[0] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_deterministic_changes_no_cpu_number_and_restores_the_global_setting(tmp_path):
    before = torch.are_deterministic_algorithms_enabled()
    plain = train(tiny(device="cpu"), tmp_path / "plain")
    strict = train(tiny(device="cpu", deterministic=True), tmp_path / "strict")
    assert torch.are_deterministic_algorithms_enabled() == before
    assert strict["device_used"]["deterministic_algorithms"] is True and plain["device_used"]["deterministic_algorithms"] is before
    a = tensors(load_checkpoint(tmp_path / "plain" / "checkpoints" / "final.pt"))
    b = tensors(load_checkpoint(tmp_path / "strict" / "checkpoints" / "final.pt"))
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert metrics_without_timing(tmp_path / "plain") == metrics_without_timing(tmp_path / "strict")


def test_a_runs_float32_scope_turns_tf32_off_on_cuda_and_restores_either_kind_of_setting():
    # Only torch's flags are touched (no CUDA call), so this runs on any machine.
    backends, cuda = torch.backends, torch.device("cuda")
    before = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32)
    with run_numerics(torch.device("cpu"), deterministic=False):
        assert (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32) == before
    with run_numerics(cuda, deterministic=False):
        assert (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32) == (False, False)
    assert (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32) == before
    handles = (backends.cuda.matmul, backends.cudnn.conv, backends.cudnn.rnn)
    legacy = [h.fp32_precision for h in handles]
    try:
        backends.cudnn.conv.fp32_precision, backends.cudnn.rnn.fp32_precision = "tf32", "ieee"  # the newer settings, mixed
        with run_numerics(cuda, deterministic=False):
            assert [h.fp32_precision for h in handles] == ["ieee"] * 3
        assert [h.fp32_precision for h in handles][1:] == ["tf32", "ieee"]
    finally:
        for h, value in zip(handles, legacy):
            h.fp32_precision = value
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = before
    assert (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is what a machine without a GPU says")
def test_a_gpu_run_on_a_machine_without_one_is_refused_before_the_directory_is_touched(tmp_path):
    train(tiny(device="cpu", rounds=2), tmp_path / "run")
    before = files(tmp_path / "run")
    with pytest.raises(ConfigError, match="--device cpu"):
        train(tiny(device="cuda", rounds=2), tmp_path / "run", overwrite=True)
    assert files(tmp_path / "run") == before
    with pytest.raises(ConfigError, match="--device cpu"):
        train(tiny(device="cuda:0", rounds=2), tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares a CUDA round with the CPU round; needs a GPU")
@pytest.mark.parametrize("algorithm", ["fedavg", "fedsam", "fedasam"])
def test_a_cuda_round_equals_the_cpu_round_within_float32_tolerance(tmp_path, algorithm):
    write_cifar(tmp_path / "data", per_batch=12)  # CIFAR layout: the CNN with crop-and-flip augmentation
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "data"), model="cnn", alpha=0.5, num_clients=4,
                         samples_per_client=12, clients_per_round=2, rounds=1, batch_size=5, lr=0.05, momentum=0.5,
                         algorithm=algorithm, eval_examples=20, seed=1)
    cpu = train(config.replace(device="cpu"), tmp_path / "cpu")
    gpu = train(config.replace(device="cuda"), tmp_path / "gpu")
    a = tensors(load_checkpoint(tmp_path / "cpu" / "checkpoints" / "final.pt"))
    b = tensors(load_checkpoint(tmp_path / "gpu" / "checkpoints" / "final.pt"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], **CUDA_VS_CPU, msg=lambda m, n=name: f"{n}: {m}")
    assert gpu["final_test_loss"] == pytest.approx(cpu["final_test_loss"], rel=1e-4)
    assert cpu["device_used"]["device"] == "cpu" and gpu["device_used"]["device"].startswith("cuda")
