"""How many grid points and samples go through the model per pass: fixed, today's CPU defaults, or by free GPU memory.

A surface is evaluated ``points_per_pass`` grid points at a time, each chunk in one pass over the
data in batches of ``batch_size`` samples. What the user fixes is used as it is. On the CPU the rest
takes today's defaults (8 points, 64 samples: the saved partial files and numbers do not change). On
a GPU the rest is chosen by :func:`plan_by_memory` from the free memory, the model's size and its
activation size, so that each call of the model sees many sample-points at once (the GPU is only
busy with large calls) without running out of memory. The choice is recorded in the surface's
request, so ``--resume`` reuses it whatever memory is free then.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fedtrain.errors import ConfigError

__all__ = [
    "CPU_POINTS_PER_PASS",
    "CPU_BATCH_SIZE",
    "PassPlan",
    "fixed_or_cpu_defaults",
    "plan_by_memory",
    "activation_footprint",
    "free_device_bytes",
    "plan_passes",
]

CPU_POINTS_PER_PASS = 8  # today's default: partial files written on the CPU keep resuming
CPU_BATCH_SIZE = 64  # fastest plain pass on a 2-core CPU (bench/results/surface.txt)
MEMORY_FRACTION = 0.5  # of the memory left after the resident data: room for cuDNN workspaces and fragmentation
ACTIVATION_FACTOR = 2  # every layer output of a no-grad pass, twice: vmap's batched copies, workspaces
POINT_COPIES = 2  # a point's parameters, and their stacked copy for vmap
TARGET_POINTS = 8  # points per pass the automatic batch size leaves room for
MAX_AUTO_POINTS = 64  # beyond this, more points per call no longer speed a GPU up; a chunk is also the unit of saving
INT32_ELEMENTS = 2**31 - 1  # kernels index a tensor with 32-bit integers; keep every layer output below it


@dataclass(frozen=True)
class PassPlan:
    """Grid points and samples per pass, and why.

    Attributes:
        points_per_pass: grid points evaluated per pass over the data (also the unit of saving).
        batch_size: samples per call of the model.
        chosen_by: ``"settings"`` (both fixed), ``"cpu defaults"``, ``"free memory"`` or ``"partial file"``
            (a resume reusing the choice recorded in the file it finishes).
        memory: for ``"free memory"``, the figures the choice was made from (bytes), else empty.
    """

    points_per_pass: int
    batch_size: int
    chosen_by: str
    memory: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what a surface's metadata records as ``pass_plan``)."""
        out = asdict(self)
        if out["memory"] is None:
            del out["memory"]
        return out


def fixed_or_cpu_defaults(batch_size: int | None, points_per_pass: int | None) -> PassPlan:
    """The values the user fixed, and today's CPU defaults (8 points per pass, batches of 64) for the others."""
    chosen_by = "settings" if batch_size is not None and points_per_pass is not None else "cpu defaults"
    return PassPlan(
        CPU_POINTS_PER_PASS if points_per_pass is None else points_per_pass,
        CPU_BATCH_SIZE if batch_size is None else batch_size,
        chosen_by,
    )


def plan_by_memory(
    *,
    free_bytes: int,
    resident_bytes: int,
    param_bytes: int,
    activation_bytes: int,
    largest_activation: int,
    num_examples: int,
    num_points: int,
    batch_size: int | None = None,
    points_per_pass: int | None = None,
) -> PassPlan:
    """Points per pass and batch size that fit in free GPU memory (a pure function of the figures given).

    The memory of one pass is about ``P * POINT_COPIES * param_bytes + P * B * ACTIVATION_FACTOR *
    activation_bytes`` for ``P`` points and batches of ``B`` samples; it must fit in the budget
    ``MEMORY_FRACTION * (free_bytes - resident_bytes)``, and ``P * B * largest_activation`` must stay
    below ``2**31`` elements (32-bit kernel indexing). What it picks:

    * the batch size, unless fixed: the largest that leaves room for ``min(8, num_points)`` points
      (or the fixed points per pass), at most ``num_examples``, then evened out so that the batches
      of a pass have (nearly) equal sizes (10,000 samples with room for 6,250: two batches of 5,000);
    * the points per pass, unless fixed: as many as fit with that batch size, at most 64 and at most
      ``num_points``.

    A value the user fixed is kept even when it does not fit (it is their call; a CUDA out-of-memory
    error then says so).

    Args:
        free_bytes: free device memory now.
        resident_bytes: what will be placed on the device before the passes (data, model, directions).
        param_bytes: bytes of the model's parameters (one grid point).
        activation_bytes: bytes of all layer outputs of one sample (:func:`activation_footprint`).
        largest_activation: elements of the largest layer output of one sample.
        num_examples: samples per split.
        num_points: grid points of the surface.
        batch_size: the user's batch size, or ``None`` to choose it.
        points_per_pass: the user's points per pass, or ``None`` to choose it.

    Returns:
        The plan, ``chosen_by="free memory"``, with the figures it was made from.

    Raises:
        ConfigError: not even one sample at one point fits in the free memory.
    """
    budget = int(MEMORY_FRACTION * (free_bytes - resident_bytes))
    per_sample = ACTIVATION_FACTOR * max(activation_bytes, 1)
    per_point = POINT_COPIES * param_bytes
    index_cap = INT32_ELEMENTS // max(largest_activation, 1)  # sample-points per call
    if budget < per_point + per_sample:
        raise ConfigError(
            f"The GPU has {free_bytes / 2**30:.2f} GiB free, {resident_bytes / 2**30:.2f} GiB of which the data and "
            "model take: too little to evaluate even one grid point. Free GPU memory (other processes), use fewer "
            "--samples, or --device cpu."
        )
    max_points = max(1, min(MAX_AUTO_POINTS, num_points))
    if batch_size is None:
        points = points_per_pass if points_per_pass is not None else min(TARGET_POINTS, max_points)
        room = min((budget - points * per_point) // (points * per_sample), index_cap // points)
        batch_size = _even_batches(num_examples, max(1, min(room, num_examples)))
    if points_per_pass is None:
        fits = min(budget // (per_point + batch_size * per_sample), index_cap // batch_size)
        points_per_pass = max(1, min(fits, max_points))
    figures = {"free_bytes": int(free_bytes), "resident_bytes": int(resident_bytes), "budget_bytes": budget,
               "param_bytes": int(param_bytes), "activation_bytes_per_sample": int(activation_bytes)}
    return PassPlan(int(points_per_pass), int(batch_size), "free memory", figures)


def _even_batches(num_examples: int, largest: int) -> int:
    """The batch size that splits ``num_examples`` into as few batches of at most ``largest`` as possible, evenly."""
    count = math.ceil(num_examples / largest)
    return math.ceil(num_examples / count)


def activation_footprint(model: nn.Module, sample: Tensor) -> tuple[int, int]:
    """Bytes of all layer outputs of a no-grad forward of one sample, and the element count of the largest one.

    The outputs of every leaf module (one without children) are summed: an upper bound of what a
    no-grad forward holds at once, where an output is freed once the next layer has read it. The
    forward runs on a CPU copy of the model; the caller's model is not touched.

    Args:
        model: the network.
        sample: one input, without the batch dimension.

    Returns:
        ``(bytes, largest element count)`` per sample.
    """
    module = copy.deepcopy(model).to("cpu").eval()
    outputs: list[Tensor] = []
    leaves = [m for m in module.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in leaves]
    try:
        with torch.no_grad():
            module(sample.detach().to("cpu")[None])
    finally:
        for hook in hooks:
            hook.remove()
    tensors = [t for t in outputs if isinstance(t, Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors), max((t.numel() for t in tensors), default=1)


def free_device_bytes(device: torch.device) -> int:
    """Free memory of a CUDA device, counting what torch's caching allocator holds but does not use."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def plan_passes(
    model: nn.Module,
    sample: Tensor,
    device: torch.device,
    *,
    num_examples: int,
    num_points: int,
    resident_bytes: int,
    batch_size: int | None = None,
    points_per_pass: int | None = None,
) -> PassPlan:
    """The plan of a surface on ``device``: fixed values, the CPU defaults, or :func:`plan_by_memory` on a GPU.

    Args:
        model: the network (its parameters' size; one forward of ``sample`` measures its activations).
        sample: one input, without the batch dimension.
        device: where the surface is evaluated.
        num_examples: samples per split.
        num_points: grid points of the surface.
        resident_bytes: what will be placed on the device before the passes (data, model, directions).
        batch_size: the user's batch size, or ``None``.
        points_per_pass: the user's points per pass, or ``None``.

    Returns:
        The plan.

    Raises:
        ConfigError: too little free GPU memory for one sample at one point.
    """
    if (batch_size is not None and points_per_pass is not None) or device.type != "cuda":
        return fixed_or_cpu_defaults(batch_size, points_per_pass)
    activation_bytes, largest = activation_footprint(model, sample)
    return plan_by_memory(
        free_bytes=free_device_bytes(device), resident_bytes=resident_bytes,
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        activation_bytes=activation_bytes, largest_activation=largest, num_examples=num_examples,
        num_points=num_points, batch_size=batch_size, points_per_pass=points_per_pass,
    )
