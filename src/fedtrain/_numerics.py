"""A run's arithmetic on its device: IEEE float32 on a GPU (no TF32), and deterministic kernels on request.

Both are process-wide torch settings, so they are set for the run and restored after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fedtrain.device import deterministic_algorithms, ieee_float32

__all__ = ["run_numerics"]


@contextlib.contextmanager
def run_numerics(device: torch.device, *, deterministic: bool) -> Iterator[None]:
    """Full float32 on a CUDA ``device`` (:func:`~fedtrain.device.ieee_float32`), and deterministic kernels when ``deterministic``.

    Without ``deterministic`` the process's own ``torch.use_deterministic_algorithms`` setting is left as it is.
    """
    determinism = deterministic_algorithms(True) if deterministic else contextlib.nullcontext()
    with determinism, ieee_float32(device):
        yield
