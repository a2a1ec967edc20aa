"""Figures of `landscape clients`: names and labels from the run, the three comparison figures and the drift plane."""

from __future__ import annotations

import pytest

from fedtrain.config import TrainConfig
from landscape.federated.api import analyze_clients
from landscape.federated.settings import ClientSettings
from landscape.plots.clients import result_label, result_name, write_client_figures
from tests.landscape.federated.cases import TINY, tiny_run
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)


def fake_result(algorithm: str, swa: bool, alpha: float, offset: float) -> dict:
    config = TrainConfig(**{**TINY, "algorithm": algorithm, "swa": swa, "alpha": alpha})
    clients = [{"client": k, "global": {"eigenvalues": [offset + k]}, "local": {"eigenvalues": [0.5 + k]},
                "update_norm": 1.0 + k, "cosine_with_mean": 0.1 * k} for k in range(4)]
    return {"checkpoint": {"run_config": config.to_dict()}, "clients": clients,
            "gap": {"pooled": offset, "weighted_mean_local": offset + 1.5}, "local_gap": {"weighted_mean_local": 2.0}}


def test_names_and_labels_come_from_the_run():
    result = fake_result("fedsam", True, 0.0, 3.0)
    assert result_name(result) == "fedsam-swa-alpha0"
    assert result_name(result, taken={"fedsam-swa-alpha0", "fedsam-swa-alpha0-2"}) == "fedsam-swa-alpha0-3"
    assert result_label(result) == "FedSAM+SWA, α = 0"
    assert result_name(fake_result("fedavg", False, 100.0, 1.0)) == "fedavg-alpha100"


def test_the_comparison_figures_are_written(tmp_path):
    results = {"a": fake_result("fedavg", False, 0.0, 10.0), "b": fake_result("fedasam", False, 0.0, 2.0)}
    written = write_client_figures(results, tmp_path)
    assert set(written) == {"clients_lambda", "clients_local_global", "clients_drift"}
    for files in written.values():
        assert [f.suffix for f in files] == [".png", ".pdf"]
        assert files[0].read_bytes()[:4] == b"\x89PNG"


def test_without_local_models_only_the_strips_are_drawn(tmp_path):
    result = fake_result("fedavg", False, 0.0, 10.0)
    for client in result["clients"]:
        del client["local"]
    assert set(write_client_figures({"a": result}, tmp_path)) == {"clients_lambda"}


def test_the_drift_plane_figure_marks_the_three_models(tmp_path):
    run = tiny_run(tmp_path / "run")
    report = analyze_clients(run / "checkpoints" / "final.pt", ClientSettings(clients=2, top_k=1, trace=False, plane_steps=3, device="cpu"))
    written = write_client_figures({"tiny": report.to_dict()}, tmp_path, {"tiny": report.planes})
    assert written["tiny-plane"][0].read_bytes()[:4] == b"\x89PNG"
    assert report.planes["pooled"].metadata["labels"][0] == "global"
