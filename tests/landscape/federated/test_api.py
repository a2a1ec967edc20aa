"""analyze_clients against exact answers: client Hessians are the dense Hessians of the clients' samples, the pooled
Hessian is their sample-weighted mean, the local models are the run's own client updates; bad inputs are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fedtrain.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fedtrain.config import TrainConfig
from fedtrain.data import load_dataset
from fedtrain.errors import CheckpointError, ConfigError, DataFormatError
from fedtrain.partition import load_partition
from fedtrain.round import plan_round
from landscape.federated.api import analyze_clients, write_clients
from landscape.federated.settings import ClientSettings
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.exact import dense_hessian
from tests.landscape.federated.cases import tiny_run

EXACT = ClientSettings(clients=None, samples_per_client=None, top_k=2, tol=1e-6, max_matvecs=None, trace_matvecs=30,
                       plane_steps=3, device="cpu")


def client_data(run_dir: Path, client: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of ``client``, normalised, independently of the code under test."""
    dataset = load_dataset("synthetic")
    rows = load_partition(run_dir / "partition.json").client_indices[client]
    return dataset.normalize(dataset.train_images[rows]), dataset.train_labels[rows]


def model_at(checkpoint: Path, params: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    model = load_checkpoint(checkpoint).build_model()
    if params is not None:
        model.load_state_dict({**model.state_dict(), **params})
    return model


def top(matrix: torch.Tensor, k: int) -> list[float]:
    return torch.linalg.eigvalsh(matrix).flip(0)[:k].tolist()


@pytest.fixture(scope="module")
def analysed(run_dir):
    checkpoint = run_dir / "checkpoints" / "round_00002.pt"
    return checkpoint, analyze_clients(checkpoint, EXACT)


def test_each_client_hessian_is_the_dense_hessian_of_its_samples_at_the_global_and_at_its_own_model(run_dir, analysed):
    checkpoint, report = analysed
    global_model = model_at(checkpoint)
    for entry in report.to_dict()["clients"]:
        k = entry["client"]
        inputs, labels = client_data(run_dir, k)
        assert entry["hessian_examples"] == entry["num_examples"] == len(labels)
        exact = dense_hessian(global_model, cross_entropy, [(inputs, labels)])
        assert entry["global"]["eigenvalues"] == pytest.approx(top(exact, 2), rel=1e-4, abs=1e-6)
        assert entry["global"]["converged"] == [True, True]
        # Hutch++ with 30 products on 1,078 dimensions: an estimate, within its own error bars
        assert abs(entry["global"]["trace"] - float(exact.trace())) <= 4 * entry["global"]["trace_stderr"] + 1e-3
        global_params = dict(global_model.named_parameters())
        local = model_at(checkpoint, {n: global_params[n].detach() + d for n, d in report.updates[k].items()})
        exact_local = dense_hessian(local, cross_entropy, [(inputs, labels)])
        assert entry["local"]["eigenvalues"] == pytest.approx(top(exact_local, 2), rel=1e-4, abs=1e-6)


def test_the_pooled_hessian_is_the_sample_weighted_mean_of_the_client_hessians(run_dir, analysed):
    checkpoint, report = analysed
    model = model_at(checkpoint)
    clients = [e["client"] for e in report.to_dict()["clients"]]
    data = [client_data(run_dir, k) for k in clients]
    counts = [len(labels) for _, labels in data]
    per_client = [dense_hessian(model, cross_entropy, [pair]) for pair in data]
    weighted = sum(n / sum(counts) * h for n, h in zip(counts, per_client))
    pooled = dense_hessian(model, cross_entropy, [(torch.cat([x for x, _ in data]), torch.cat([y for _, y in data]))])
    torch.testing.assert_close(pooled, weighted, rtol=1e-9, atol=1e-10)  # the identity, on the matrices
    result = report.to_dict()
    assert result["pooled"]["eigenvalues"] == pytest.approx(top(weighted, 2), rel=1e-4, abs=1e-6)  # ... and as reported
    assert result["pooled"]["num_examples"] == sum(counts)
    gap = result["gap"]
    assert gap["weighted_mean_local"] == pytest.approx(sum(n * top(h, 1)[0] for n, h in zip(counts, per_client)) / sum(counts), rel=1e-4)
    assert gap["gap"] >= -1e-4 * gap["pooled"]  # lambda_max is convex: the clients' mean is never below the pooled value


def test_the_local_models_are_the_runs_own_client_updates(run_dir, analysed):
    """From the round-2 checkpoint, the sampled clients' updates of round 2 averaged as the server does give the round-3 model."""
    checkpoint, report = analysed
    config = TrainConfig.from_dict(load_checkpoint(checkpoint).config)
    plan = plan_round(config, 2)
    assert report.to_dict()["client_update"]["round"] == 2 and report.to_dict()["client_update"]["lr"] == plan.lr
    counts = load_partition(run_dir / "partition.json").num_examples
    total = sum(counts[k] for k in plan.clients)
    before, after = load_checkpoint(checkpoint).weights, load_checkpoint(run_dir / "checkpoints" / "final.pt").weights
    for name, delta in report.updates[plan.clients[0]].items():
        mean = sum(counts[k] * report.updates[k][name].double() for k in plan.clients) / total
        torch.testing.assert_close(before[name] + mean.float(), after[name], rtol=0, atol=1e-6)


def test_drift_and_plane_are_reported_with_the_clients_marked(analysed):
    _, report = analysed
    result = report.to_dict()
    assert [e["update_norm"] for e in result["clients"]] == pytest.approx(result["drift"]["update_norms"])
    assert all(-1 <= e["cosine_with_mean"] <= 1 for e in result["clients"])
    a, b = result["plane"]["clients"]
    assert result["plane"]["chosen"] == "most divergent pair of updates"
    cosines = result["drift"]["pairwise_cosines"]
    positions = [e["client"] for e in result["clients"]]
    smallest = min(cosines[i][j] for i in range(4) for j in range(i + 1, 4))
    assert cosines[positions.index(a)][positions.index(b)] == smallest
    assert set(report.planes) == {"pooled", f"client {a}", f"client {b}"}
    surface = report.planes["pooled"]
    assert surface.metadata["labels"] == ["global", f"client {a}", f"client {b}"]
    assert surface.values["train_loss"].shape == (3, 3) and surface.complete
    assert result["plane"]["model_coordinates"][0] == [0.0, 0.0]
    distance = sum(float((report.updates[a][n].double() ** 2).sum()) for n in report.updates[a]) ** 0.5
    assert result["plane"]["model_coordinates"][1][0] == pytest.approx(distance, rel=1e-6)  # client a on the first axis


def test_costs_seeds_and_settings_are_recorded(analysed):
    _, report = analysed
    result = report.to_dict()
    assert result["settings"] == EXACT.to_dict()
    cost = result["cost"]
    assert cost["clients"] == 4 and cost["hvps"]["total"] == sum(e["hvps"] for e in result["clients"]) + result["pooled"]["hvps"]
    assert all(e["hvps"] == e["global"]["hvps"] + e["local"]["hvps"] for e in result["clients"])
    assert {"clients", "client_samples", "lanczos", "trace", "run"} <= set(result["seeds"])
    assert result["checkpoint"]["partition_hash"] == load_checkpoint(result["checkpoint"]["path"]).partition["hash"]


def test_same_settings_same_numbers_and_a_seeded_sample_of_clients_and_samples(run_dir):
    checkpoint = run_dir / "checkpoints" / "round_00001.pt"
    settings = ClientSettings(clients=2, samples_per_client=5, top_k=1, trace=False, plane=False, device="cpu")
    first, second = (analyze_clients(checkpoint, settings).to_dict() for _ in range(2))
    assert [e["client"] for e in first["clients"]] == [e["client"] for e in second["clients"]]
    assert [e["global"]["eigenvalues"] for e in first["clients"]] == [e["global"]["eigenvalues"] for e in second["clients"]]
    assert len(first["clients"]) == 2 and all(e["hessian_examples"] == 5 for e in first["clients"])
    assert first["pooled"]["num_examples"] == 10 and "plane" not in first


def test_write_clients_saves_the_json_and_the_planes(analysed, tmp_path):
    _, report = analysed
    written = write_clients(report, tmp_path, "tiny")
    data = json.loads((tmp_path / "tiny.json").read_text())
    assert data["format"] == "fedlandscape.clients" and len(written) == 4
    assert all((tmp_path / f).is_file() for f in data["plane"]["files"].values())


def test_a_checkpoint_without_its_run_or_with_another_partition_is_refused(run_dir, tmp_path):
    ckpt = load_checkpoint(run_dir / "checkpoints" / "final.pt")
    bare = tmp_path / "bare.pt"
    save_checkpoint(Checkpoint(model_name=ckpt.model_name, model_kwargs=ckpt.model_kwargs, weights=ckpt.weights,
                               dataset=ckpt.dataset), bare)
    with pytest.raises(CheckpointError, match="records no training configuration or partition"):
        analyze_clients(bare, EXACT)
    other = tiny_run(tmp_path / "other", seed=4)  # another partition
    moved = tmp_path / "moved" / "checkpoints"
    moved.mkdir(parents=True)
    shutil.copy(run_dir / "checkpoints" / "final.pt", moved / "final.pt")
    shutil.copy(other / "partition.json", moved.parent / "partition.json")
    with pytest.raises(CheckpointError, match="was trained on partition"):
        analyze_clients(moved / "final.pt", EXACT)
    (moved.parent / "partition.json").write_text((other / "partition.json").read_text().replace('"indices": [', '"indices": [0, ', 1))
    with pytest.raises(DataFormatError):
        analyze_clients(moved / "final.pt", EXACT)
    (moved.parent / "partition.json").unlink()  # rebuilt from the recorded recipe when absent
    assert analyze_clients(moved / "final.pt", ClientSettings(clients=2, top_k=1, trace=False, local=False, device="cpu")).to_dict()["clients"]


def test_plane_clients_must_exist(run_dir):
    with pytest.raises(ConfigError, match="clients 0..3 only"):
        analyze_clients(run_dir / "checkpoints" / "final.pt", ClientSettings(plane_clients=(1, 9), device="cpu"))
    with pytest.raises(ConfigError, match="needs two clients"):
        analyze_clients(run_dir / "checkpoints" / "final.pt", ClientSettings(clients=1, device="cpu"))


def test_every_device_gives_the_cpu_numbers(run_dir, device):
    checkpoint = run_dir / "checkpoints" / "final.pt"
    settings = ClientSettings(clients=2, samples_per_client=6, top_k=1, trace=False, plane_steps=3, device=str(device))
    on_device = analyze_clients(checkpoint, settings).to_dict()
    on_cpu = analyze_clients(checkpoint, ClientSettings(**{**settings.to_dict(), "plane_clients": None, "device": "cpu"})).to_dict()
    assert on_device["device_used"]["device"].startswith(device.type)
    for a, b in zip(on_device["clients"], on_cpu["clients"]):
        assert a["client"] == b["client"]
        for where in ("global", "local"):
            assert a[where]["eigenvalues"] == pytest.approx(b[where]["eigenvalues"], rel=1e-4)
        assert a["update_norm"] == pytest.approx(b["update_norm"], rel=1e-4)
    assert on_device["plane"]["clients"] == on_cpu["plane"]["clients"]


def test_the_partition_of_a_run_with_a_validation_split_is_rebuilt_with_it(tmp_path):
    from landscape.federated.api import run_partition

    run = tiny_run(tmp_path / "val", validation=100)
    final = run / "checkpoints" / "final.pt"
    ckpt = load_checkpoint(final)
    saved = load_partition(run / "partition.json")
    (run / "partition.json").unlink()  # rebuilt from the recorded recipe, validation split included
    config = TrainConfig.from_dict(ckpt.config)
    rebuilt = run_partition(ckpt, config, load_dataset("synthetic"), final)
    assert rebuilt.hash == saved.hash and rebuilt.validation == 100
