"""A run's arithmetic on its device: IEEE float32 on a GPU (no TF32), deterministic kernels and a CPU thread count on request.

All are process-wide torch settings, so they are set for the run and restored after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fedtrain.config import check_threads
from fedtrain.device import deterministic_algorithms, ieee_float32

__all__ = ["run_numerics"]


@contextlib.contextmanager
def run_numerics(device: torch.device, *, deterministic: bool, threads: int | None = None) -> Iterator[None]:
    """Full float32 on a CUDA ``device`` (:func:`~fedtrain.device.ieee_float32`), deterministic kernels when ``deterministic``,
    and ``threads`` CPU threads for torch when given.

    Without ``deterministic`` the process's own ``torch.use_deterministic_algorithms`` setting is left as it is,
    and without ``threads`` its thread count.
    """
    determinism = deterministic_algorithms(True) if deterministic else contextlib.nullcontext()
    with determinism, ieee_float32(device), _torch_threads(threads):
        yield


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    # The thread count changes the order of CPU reductions, hence the last bits of every result.
    before = torch.get_num_threads()
    if threads is not None:
        check_threads(threads)  # a recorded count too: torch.set_num_threads overflows on a huge one
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
