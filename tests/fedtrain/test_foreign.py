"""A plain state_dict file as a checkpoint: read with weights_only, nested dicts found, model and data from the spec, clear errors."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.data import evaluation_tensors
from fedtrain.errors import CheckpointError, ConfigError, DataFormatError
from fedtrain.foreign import ForeignCheckpoint, ForeignSpec, TensorData, dataset_of, load_foreign, load_state_dict_file, open_checkpoint
from fedtrain.models import build_model

KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [2]}


@pytest.fixture
def loaders(tmp_path, monkeypatch):
    (tmp_path / "user_loaders.py").write_text(textwrap.dedent('''
        import torch
        def both():
            g = torch.Generator().manual_seed(0)
            return torch.randn(12, 1, 16, 16, generator=g), torch.arange(12) % 3
        def labels_float():
            return torch.randn(4, 1, 16, 16), torch.zeros(4)
        def one_tensor():
            return torch.zeros(3)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_loaders", raising=False)


def test_a_state_dict_nested_under_a_common_key_is_found_and_built_into_the_model(tmp_path):
    weights = build_model("mlp", seed=0, **KWARGS).state_dict()
    torch.save({"epoch": 3, "model_state_dict": weights}, tmp_path / "w.pt")
    checkpoint = load_foreign(tmp_path / "w.pt", ForeignSpec("mlp", {"hidden": [2]}, dataset="synthetic"))
    assert isinstance(checkpoint, ForeignCheckpoint) and checkpoint.model_kwargs == KWARGS and checkpoint.round == 0
    model = checkpoint.build_model()
    assert not model.training and all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert dataset_of(checkpoint) is checkpoint.data and checkpoint.resolve_weights("auto") == "global"


def test_a_loader_without_a_split_argument_serves_both_splits_as_given(tmp_path, loaders):
    torch.save(build_model("mlp", seed=0, input_shape=[1, 16, 16], num_classes=3, hidden=[2]).state_dict(), tmp_path / "w.pt")
    checkpoint = load_foreign(tmp_path / "w.pt", ForeignSpec("mlp", {"hidden": [2]}, data="user_loaders:both"))
    data = checkpoint.data
    assert isinstance(data, TensorData) and data.num_classes == 3 and data.input_shape == (1, 16, 16)
    inputs, labels = evaluation_tensors(data, "test", 5, seed=0)  # the toolkit's seeded subset, inputs unchanged
    full_inputs, full_labels = data.split("train")
    assert inputs.shape == (5, 1, 16, 16) and all(any(torch.equal(x, y) for y in full_inputs) for x in inputs)
    assert data.describe()["train_size"] == 12 and checkpoint.provenance()["data"] == "user_loaders:both"


@pytest.mark.parametrize(("loader", "error", "message"), [
    ("user_loaders:labels_float", DataFormatError, "must return float inputs .* and integer class labels"),
    ("user_loaders:one_tensor", DataFormatError, "returned Tensor for train and test; it must return a pair of tensors"),
])
def test_bad_loader_output_is_named(tmp_path, loaders, loader, error, message):
    torch.save(build_model("mlp", seed=0, **KWARGS).state_dict(), tmp_path / "w.pt")
    with pytest.raises(error, match=message):
        load_foreign(tmp_path / "w.pt", ForeignSpec("mlp", data=loader))


def test_files_that_are_not_state_dicts_are_refused_without_running_code(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_file(tmp_path / "none.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="could not be read as a state_dict"):
        load_state_dict_file(tmp_path / "text.pt")
    torch.save({"lr": 0.1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        load_state_dict_file(tmp_path / "plain.pt")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # a pickled module: refused by weights_only
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_state_dict_file(tmp_path / "pickled.pt")


def test_spec_errors_and_open_checkpoint_names_a_plain_state_dict(tmp_path):
    with pytest.raises(ConfigError, match="Unknown model 'lenet'"):
        ForeignSpec("lenet", dataset="synthetic")
    with pytest.raises(ConfigError, match="exactly one of --dataset NAME and --data"):
        ForeignSpec("mlp", dataset="synthetic", data="m:f")
    weights = build_model("mlp", seed=0, **KWARGS).state_dict()
    torch.save(weights, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="is a plain PyTorch state_dict.*Add --model"):
        open_checkpoint(tmp_path / "w.pt")
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=KWARGS, weights=weights, dataset="synthetic"), tmp_path / "c.pt")
    assert type(open_checkpoint(tmp_path / "c.pt")) is Checkpoint
