"""hessian_eigenvectors and analyze_checkpoint: exact on a small model on every device, full JSON report with the
device used, CPU eigenvector files, clean errors."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch

from fedtrain.checkpoint import Checkpoint, file_sha256, save_checkpoint
from fedtrain.device import device_record, resolve_device
from fedtrain.errors import CheckpointError, ConfigError
from fedtrain.io import to_json
from fedtrain.models import build_model
from landscape.hessian.exact import dense_hessian
from landscape.hessian.analysis import analyze_checkpoint, cross_entropy, hessian_eigenvectors
from landscape.settings import HessianSettings
from tests.landscape.hessian.cases import single_threaded  # noqa: F401,E402 (autouse fixture)

MLP_KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [4]}
QUICK = HessianSettings(num_examples=120, batch_size=50, top_k=3, trace_matvecs=12, density_probes=2, density_steps=12)


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    model = build_model("mlp", seed=0, **MLP_KWARGS)
    swa = build_model("mlp", seed=1, **MLP_KWARGS)
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=MLP_KWARGS, weights=model.state_dict(), dataset="synthetic",
                               swa_weights=swa.state_dict(), swa_count=3), path)
    return path


def test_hessian_eigenvectors_match_the_dense_hessian_and_leave_the_model_alone(device):
    model = build_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=(5,), seed=0).double().train()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(30, 1, 4, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (30,), generator=generator)
    before = copy.deepcopy(model.state_dict())
    values, vectors = hessian_eigenvectors(model, inputs, labels, top_k=2, batch_size=8, tol=1e-9, device=device)
    exact = dense_hessian(model, cross_entropy, [(inputs, labels)])
    evals, evecs = torch.linalg.eigh(exact)
    assert values == pytest.approx(evals.flip(0)[:2].tolist(), rel=1e-6)
    for i, vector in enumerate(vectors):
        assert list(vector) == [n for n, _ in model.named_parameters()]
        assert all(t.device.type == device.type for t in vector.values())  # on the device computed on
        flat = torch.cat([t.reshape(-1) for t in vector.values()]).cpu()
        assert abs(float(flat @ evecs[:, -1 - i])) == pytest.approx(1.0, abs=1e-6)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())  # a private copy went to the device
    spec_values, _ = hessian_eigenvectors(model, inputs, labels, top_k=2, batch_size=8, tol=1e-9, device=str(device))
    assert spec_values == pytest.approx(values, rel=1e-12)  # a spec string is resolved like the device it names


def test_analyze_checkpoint_reports_every_quantity_with_config_and_seeds(checkpoint_path, tmp_path):
    report = analyze_checkpoint(checkpoint_path, QUICK, eigenvectors_out=tmp_path / "vecs.pt")
    result = json.loads(to_json(report.to_dict()))
    assert len(result["eigenvalues"]) == 3 and result["eigenvalues"] == sorted(result["eigenvalues"], reverse=True)
    assert result["ratio"] == pytest.approx(result["eigenvalues"][0] / result["eigenvalues"][2])
    assert all(result["converged"]) and len(result["residuals"]) == 3
    assert set(result["trace"]) >= {"estimate", "stderr", "method", "num_matvecs"} and result["trace"]["method"] == "hutch++"
    assert set(result["density"]) >= {"nodes", "weights", "grid", "values", "bandwidth"}
    assert result["hvps"]["total"] == result["hvps"]["eigenvalues"] + 12 + 24
    config = result["config"]
    assert config["weights"] == "swa" and config["bn_mode"] == "eval" and config["split"] == "train"
    assert config["checkpoint_sha256"] == file_sha256(checkpoint_path)
    assert config["seeds"] == {"lanczos": 0, "trace": 1, "density": 2, "subset": 0}
    assert config["num_examples"] == 120 and "torch" in config["versions"] and config["hvp_method"] == "fwd-rev"
    saved = torch.load(tmp_path / "vecs.pt", weights_only=True)
    assert saved["eigenvalues"] == report.eigenvalues and saved["vectors"][0]["net.1.weight"].shape == (4, 256)


def test_config_keeps_the_keys_and_order_of_the_json_written_so_far(checkpoint_path):
    report = analyze_checkpoint(checkpoint_path, replace(QUICK, trace=False, density=False, num_examples=None, split="test"))
    assert list(report.config) == [
        "backend", "num_examples", "batch_size", "top_k", "tol", "max_matvecs", "trace", "trace_method", "trace_matvecs",
        "density", "density_probes", "density_steps", "device", "device_used", "seeds", "bn_mode", "loss", "versions", "hvp_method",
        "hvp_cached_graph", "num_parameters", "checkpoint", "checkpoint_sha256", "weights", "model", "dataset", "split",
        "subset_seed", "checkpoint_round",
    ]
    assert report.config["num_examples"] == 300  # the samples used (the whole synthetic test split), not None


def test_the_device_is_recorded_the_eigenvectors_are_cpu_tensors_and_the_numbers_agree_with_the_cpu(checkpoint_path, tmp_path, device):
    # float32 model: on CUDA the products are full float32 in another summation order, so eigenvalues
    # agree with the CPU's to float32 rounding of the products (rel 1e-4), not bit for bit
    settings = replace(QUICK, device=str(device), density=False)
    report = analyze_checkpoint(checkpoint_path, settings, eigenvectors_out=tmp_path / "vecs.pt")
    resolved = resolve_device(str(device))
    assert report.config["device"] == str(device)
    assert report.config["device_used"] == json.loads(to_json(device_record(resolved)))
    assert report.eigenvectors is not None and all(t.device.type == "cpu" for v in report.eigenvectors for t in v.values())
    saved = torch.load(tmp_path / "vecs.pt", weights_only=True)  # no map_location needed: CPU tensors
    assert all(t.device.type == "cpu" for v in saved["vectors"] for t in v.values())
    on_cpu = analyze_checkpoint(checkpoint_path, replace(settings, device="cpu"))
    assert report.eigenvalues == pytest.approx(on_cpu.eigenvalues, rel=1e-4)
    assert report.trace["estimate"] == pytest.approx(on_cpu.trace["estimate"], rel=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_refused_before_anything_is_read(tmp_path):
    for settings in (HessianSettings(device="cuda"), HessianSettings(device="cuda:1", backend="pyhessian")):
        with pytest.raises(ConfigError, match="asks for a GPU"):
            analyze_checkpoint(tmp_path / "missing.pt", settings)  # the device is checked before the file
    with pytest.raises(ConfigError, match="asks for a GPU"):
        hessian_eigenvectors(build_model("mlp", **MLP_KWARGS), torch.zeros(2, 1, 16, 16), torch.zeros(2, dtype=torch.long),
                             device="cuda")


def test_the_same_command_gives_the_same_numbers_and_global_weights_differ(checkpoint_path):
    quick = replace(QUICK, trace=False, density=False)
    first = analyze_checkpoint(checkpoint_path, quick)
    second = analyze_checkpoint(checkpoint_path, quick)
    assert first.eigenvalues == second.eigenvalues
    other = analyze_checkpoint(checkpoint_path, replace(quick, weights="global"))
    assert other.config["weights"] == "global" and other.eigenvalues != first.eigenvalues


def test_pyhessian_backend_reports_its_density_crash(checkpoint_path, device):
    report = analyze_checkpoint(checkpoint_path, replace(QUICK, backend="pyhessian", top_k=1, device=str(device)))
    result = report.to_dict()
    assert len(result["eigenvalues"]) == 1 and result["trace"]["method"] == "pyhessian-hutchinson"
    assert result["density"] is None and "torch.linalg.eig" in result["errors"]["density"]
    assert result["config"]["device_used"]["device"].startswith(device.type)
    ours = analyze_checkpoint(checkpoint_path, replace(QUICK, top_k=1, trace=False, density=False, tol=1e-6))
    assert result["eigenvalues"][0] == pytest.approx(ours.eigenvalues[0], rel=2e-2)


def test_bad_requests_raise_clear_errors(checkpoint_path, tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        analyze_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="split must be 'train' or 'test'"):
        analyze_checkpoint(checkpoint_path, HessianSettings(split="validation"))
    with pytest.raises(ConfigError, match="backend must be one of"):
        analyze_checkpoint(checkpoint_path, replace(QUICK, backend="eigenthings"))
    with pytest.raises(ConfigError, match="eigenvectors_out needs backend='fedlandscape'"):
        analyze_checkpoint(checkpoint_path, HessianSettings(backend="pyhessian"), eigenvectors_out=tmp_path / "v.pt")
    with pytest.raises(ConfigError, match="trace_matvecs must be >= 3"):
        analyze_checkpoint(checkpoint_path, replace(QUICK, trace_matvecs=2))
    assert not (tmp_path / "v.pt").exists()
