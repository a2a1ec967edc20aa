"""Device specs: parsing, resolution on this machine, the record, determinism and CPU copies."""

from __future__ import annotations

import pytest
import torch

from fedtrain.config import check_device_spec
from fedtrain.device import deterministic_algorithms, device_record, resolve_device, to_cpu
from fedtrain.errors import ConfigError


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_specs_pass_unchanged(spec):
    assert check_device_spec(spec) == spec


@pytest.mark.parametrize("spec", ["gpu", "CUDA", "cuda:", "cuda:x", "cpu:0", "", None, 0, "mps"])
def test_malformed_specs_are_refused_with_the_accepted_forms(spec):
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
        check_device_spec(spec)


def test_cpu_resolves_to_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_is_cuda_exactly_when_a_gpu_is_visible():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is what a machine without a GPU says")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_says_what_to_use_instead(spec):
    with pytest.raises(ConfigError, match="--device cpu"):
        resolve_device(spec)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_index_beyond_the_machine_is_refused():
    with pytest.raises(ConfigError, match="names GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_record_names_the_device_and_versions(device):
    record = device_record(device)
    assert record["device"] == str(device)
    assert record["torch"] == torch.__version__ and type(record["torch"]) is str  # plain, so weights_only loads accept it
    assert isinstance(record["name"], str) and record["name"]
    assert record["deterministic_algorithms"] is torch.are_deterministic_algorithms_enabled()


def test_deterministic_algorithms_are_restored_after_the_block():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_to_cpu_copies_and_never_aliases(device):
    source = {"w": torch.arange(4.0, device=device)}
    copied = to_cpu(source)
    assert copied["w"].device == torch.device("cpu")
    copied["w"][0] = 99.0
    assert float(source["w"][0]) == 0.0
