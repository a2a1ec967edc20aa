"""Where tensors live: resolving ``--device`` (auto, cpu, cuda, cuda:N), describing it for the record, determinism.

Every command and settings record carries a device *spec* string; it is resolved here, once, into a
``torch.device``. What a run recorded is :func:`device_record` of the resolved device, so a reader
sees the GPU model and the torch/CUDA versions next to the numbers. Results are always saved as CPU
tensors, so a file written on a GPU loads on a CPU-only machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from fedtrain.config import check_device_spec
from fedtrain.errors import ConfigError

__all__ = [
    "resolve_device",
    "device_record",
    "deterministic_algorithms",
    "ieee_float32",
    "synchronize",
    "to_cpu",
]

# cuBLAS needs a fixed workspace to give repeatable sums (CUDA docs, "Results reproducibility").
_CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(spec: str = "auto") -> torch.device:
    """The ``torch.device`` a spec names: ``auto`` is the current CUDA device when there is one, else the CPU.

    Raises:
        ConfigError: a malformed spec, or a CUDA device this machine or torch build does not have.
    """
    spec = check_device_spec(spec)
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "has no CUDA support" if torch.version.cuda is None else f"was built for CUDA {torch.version.cuda} but sees no GPU"
        raise ConfigError(f"--device {spec} asks for a GPU, but this torch {torch.__version__} {build}. "
                          "Use --device cpu (or auto, which falls back to the CPU), or run on a machine with a GPU.")
    index = torch.cuda.current_device() if spec in ("auto", "cuda") else int(spec.split(":")[1])
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"--device {spec} names GPU {index}, but this machine has {count} (cuda:0 to cuda:{count - 1}).")
    return torch.device("cuda", index)


def device_record(device: torch.device) -> dict[str, Any]:
    """What a result records about where it was computed: device, its model, torch and CUDA versions."""
    record: dict[str, Any] = {"device": str(device), "torch": str(torch.__version__), "cuda": torch.version.cuda,
                              "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if device.type == "cuda":
        record["name"] = torch.cuda.get_device_name(device)
    else:
        record["name"] = platform.processor() or platform.machine()
        record["threads"] = torch.get_num_threads()
    return record


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Run the body with ``torch.use_deterministic_algorithms(enabled)``, restoring the previous setting after.

    On the CPU every kernel this toolkit uses is deterministic already. On a GPU, some kernels
    (e.g. the backward of convolutions, scatter-adds) may sum in a varying order; with ``enabled`` torch
    picks deterministic kernels (slower) and raises for any operation that has none.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if enabled and previous_workspace is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = _CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        if enabled and previous_workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


@contextlib.contextmanager
def ieee_float32(device: torch.device) -> Iterator[None]:
    """Full IEEE float32 matrix products and convolutions on a CUDA ``device`` inside the body (no TF32); a no-op elsewhere.

    cuDNN's default on Ampere and later GPUs is TF32 (a 10-bit mantissa) for float32 convolutions,
    which is mixed precision in all but name. The legacy ``allow_tf32`` flags are used unless the
    process has set torch's newer per-backend ``fp32_precision`` settings (torch >= 2.9), after which
    torch refuses to read the legacy flags. The previous settings are restored after.
    """
    if device.type != "cuda":
        yield
        return
    backends = torch.backends
    try:
        saved_flags = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32)
    except RuntimeError:  # the newer settings are in use: keep to them
        handles = (backends.cuda.matmul, backends.cudnn.conv, backends.cudnn.rnn)
        saved = [h.fp32_precision for h in handles]
        for h in handles:
            h.fp32_precision = "ieee"
        try:
            yield
        finally:
            for h, value in zip(handles, saved):
                h.fp32_precision = value
        return
    backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = saved_flags


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for timings; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_cpu(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A copy of ``tensors`` on the CPU (what files hold, whatever device computed them)."""
    return {name: t.detach().to("cpu", copy=True) for name, t in tensors.items()}
