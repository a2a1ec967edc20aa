"""A run's arithmetic on its device: IEEE float32 on a GPU (no TF32), and deterministic kernels on request.

Both are process-wide torch settings, so they are set for the run and restored after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fedtrain.device import deterministic_algorithms

__all__ = ["run_numerics", "ieee_float32"]


@contextlib.contextmanager
def run_numerics(device: torch.device, *, deterministic: bool) -> Iterator[None]:
    """Full float32 on a CUDA ``device`` (TF32 off), and ``torch.use_deterministic_algorithms`` when ``deterministic``.

    Without ``deterministic`` the process's own setting is left as it is.
    """
    determinism = deterministic_algorithms(True) if deterministic else contextlib.nullcontext()
    with determinism, (ieee_float32() if device.type == "cuda" else contextlib.nullcontext()):
        yield


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """float32 matmuls and cuDNN convolutions in IEEE float32 inside the block, not TF32 (10-bit mantissa).

    The paper's training is float32; cuDNN's default on Ampere and later GPUs is TF32 for convolutions.
    The legacy ``allow_tf32`` flags are used unless the process has set torch's newer per-backend
    ``fp32_precision`` settings (torch >= 2.9), after which torch refuses to read the legacy flags.
    """
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
