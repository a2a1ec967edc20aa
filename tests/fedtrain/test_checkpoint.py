"""Checkpoints: self-describing round trip, safe loading, clear errors, atomic writes."""

from __future__ import annotations

import os

import pytest
import torch

from fedtrain.checkpoint import FORMAT, Checkpoint, file_sha256, load_checkpoint, save_checkpoint
from fedtrain.errors import CheckpointError
from fedtrain.models import build_model

KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [8]}


def _checkpoint(swa: bool = False) -> Checkpoint:
    model = build_model("mlp", seed=0, **KWARGS)
    mean = {k: v + 1 for k, v in model.state_dict().items()} if swa else None
    return Checkpoint(model_name="mlp", model_kwargs=KWARGS, weights=model.state_dict(), dataset="synthetic",
                      swa_weights=mean, swa_count=3 if swa else 0, round=12, config={"algorithm": "fedavg"})


def test_round_trip_rebuilds_the_model_with_no_other_information(tmp_path):
    path = save_checkpoint(_checkpoint(swa=True), tmp_path / "ckpt.pt")
    ckpt = load_checkpoint(path)
    assert (ckpt.model_name, ckpt.dataset, ckpt.round, ckpt.swa_count) == ("mlp", "synthetic", 12, 3)
    assert ckpt.versions["torch"] == str(torch.__version__)
    swa_model, global_model = ckpt.build_model(), ckpt.build_model("global")
    assert not swa_model.training
    assert torch.equal(swa_model.state_dict()["net.1.weight"], ckpt.swa_weights["net.1.weight"])
    assert torch.equal(global_model.state_dict()["net.1.weight"], ckpt.weights["net.1.weight"])
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.pt"]


def test_asking_for_a_missing_swa_model_is_an_error(tmp_path):
    ckpt = load_checkpoint(save_checkpoint(_checkpoint(swa=False), tmp_path / "c.pt"))
    assert ckpt.resolve_weights("auto") == "global"
    with pytest.raises(CheckpointError, match="no SWA model"):
        ckpt.build_model("swa")


def test_missing_truncated_foreign_and_future_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    path = save_checkpoint(_checkpoint(), tmp_path / "c.pt")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "f.pt"
    torch.save(build_model("mlp", **KWARGS).state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not a fedlandscape checkpoint"):
        load_checkpoint(foreign)
    future = tmp_path / "v9.pt"
    torch.save({**_checkpoint().to_dict(), "format_version": 9}, future)
    with pytest.raises(CheckpointError, match="format version 9"):
        load_checkpoint(future)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(text)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_checkpoint_from_elsewhere_cannot_execute_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": FORMAT, "payload": _Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_weights_of_another_architecture_are_reported(tmp_path):
    bad = Checkpoint(model_name="mlp", model_kwargs={**KWARGS, "hidden": [4]},
                     weights=build_model("mlp", **KWARGS).state_dict(), dataset="synthetic")
    with pytest.raises(CheckpointError, match="do not fit model 'mlp'"):
        bad.build_model()  # in memory
    # on disk: refused as it is read, before any command uses it
    with pytest.raises(CheckpointError, match=r"do not fit model 'mlp'.*'net.1.weight' has shape \[8, 256\], the model's is \[4, 256\]"):
        load_checkpoint(save_checkpoint(bad, tmp_path / "c.pt"))


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint(_checkpoint(), tmp_path / "c.pt")
    before = file_sha256(path)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_checkpoint(swa=True), path)
    assert file_sha256(path) == before
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]


def test_written_files_get_ordinary_permissions(tmp_path):
    from fedtrain.io import write_json

    write_json(tmp_path / "a.json", {"x": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_tensors_on_any_device_are_written_as_cpu_tensors_and_load_where_asked(tmp_path, device):
    ckpt = _checkpoint(swa=True)
    on_device = Checkpoint(model_name="mlp", model_kwargs=KWARGS, weights={k: v.to(device) for k, v in ckpt.weights.items()},
                           dataset="synthetic", swa_weights={k: v.to(device) for k, v in ckpt.swa_weights.items()}, swa_count=3,
                           state={"server_momentum": {k: v.to(device) for k, v in ckpt.weights.items()}})
    path = save_checkpoint(on_device, tmp_path / "c.pt")
    raw = torch.load(path, map_location=None, weights_only=True)
    written = [*raw["weights"].values(), *raw["swa"]["weights"].values(), *raw["state"]["server_momentum"].values()]
    assert all(t.device.type == "cpu" for t in written)
    assert all(torch.equal(raw["weights"][k], v) for k, v in ckpt.weights.items())
    loaded = load_checkpoint(path, map_location=device)
    assert all(t.device.type == device.type for t in [*loaded.weights.values(), *loaded.swa_weights.values()])
    assert all(t.device.type == "cpu" for t in load_checkpoint(path).weights.values())
