"""Data-parallel Hessian analysis over ``torch.distributed``: each rank a shard of the batches, one float64 all-reduce per product.

The way PyHessianDist and hessian-eigenthings shard Hessian-vector products: rank ``r`` of ``N`` holds a
contiguous block of the analysis's batches (the same batches a one-process analysis makes, so every
per-batch product is computed exactly as there) and computes its sample-weighted share of the product,

.. math:: (Hv)_r = \\sum_{b \\in B_r} \\frac{n_b}{n} H_b v, \\qquad Hv = \\sum_r (Hv)_r,

summed over ranks by one ``all_reduce`` of the float64 vector. The eigensolver, trace and density run
replicated on every rank with the same seeds on the same reduced products, so every rank holds the same
result and the result does not depend on ``N`` beyond the float64 summation order. Rank 0 alone writes
(the eigenvectors file) and hands its report back. Processes are spawned with ``torch.multiprocessing``
(no ``torchrun``): gloo on CPUs, NCCL on GPUs (rank ``r`` on ``cuda:r``).
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from fedtrain.device import resolve_device
from fedtrain.errors import CheckpointError, ConfigError, DataFormatError, DataNotFoundError, LandscapeError
from landscape.hessian.analysis import HessianReport, OperatorFactory, analyze_checkpoint, cross_entropy
from landscape.hessian.hvp import Batch
from landscape.hessian.operator import CACHE_MAX_EXAMPLES, CACHE_MAX_PARAMS, HessianOperator
from landscape.settings import HessianSettings

__all__ = ["AllReducedOperator", "shard", "rank_operator_factory", "run_ranks", "analyze_checkpoint_parallel"]

T = TypeVar("T")
_ERRORS: dict[str, type[LandscapeError]] = {
    cls.__name__: cls for cls in (ConfigError, CheckpointError, DataNotFoundError, DataFormatError)
}


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s contiguous block of ``items``; the blocks of ranks ``0..world-1`` partition ``items`` in order, sizes within one."""
    return list(items[rank * len(items) // world : (rank + 1) * len(items) // world])


class AllReducedOperator:
    """A rank's :class:`~landscape.hessian.operator.HessianOperator` over its shard, its products summed over all ranks.

    ``matvec``/``matmat`` are collective: every rank of the process group must call them, in the same order.

    Args:
        local: the operator of this rank's batches.
        total_examples: the samples of all ranks together (the ``n`` of the mean loss).
        group: the process group (default: the world).
    """

    def __init__(self, local: HessianOperator, total_examples: int, group: Any = None) -> None:
        self.local = local
        self.total_examples = total_examples
        self.group = group
        self.dim = local.dim
        self.device = local.device
        self.method = local.method
        self.cache_graph = local.cache_graph

    def share(self, matrix: Tensor) -> Tensor:
        """This rank's term :math:`\\sum_{b \\in B_r} (n_b / n) H_b V` of the product (no communication)."""
        product = self.local.matvec(matrix) if matrix.ndim == 1 else self.local.matmat(matrix)
        return product.mul_(self.local.num_examples / self.total_examples)

    def matvec(self, vector: Tensor) -> Tensor:
        """``H v`` over all ranks' samples (float64; one all-reduce)."""
        product = self.share(vector)
        dist.all_reduce(product, op=dist.ReduceOp.SUM, group=self.group)
        return product

    def matmat(self, matrix: Tensor) -> Tensor:
        """``H V`` over all ranks' samples (float64; one all-reduce)."""
        product = self.share(matrix)
        dist.all_reduce(product, op=dist.ReduceOp.SUM, group=self.group)
        return product

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        """As :meth:`HessianOperator.flatten`."""
        return self.local.flatten(tensors)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """As :meth:`HessianOperator.unflatten`."""
        return self.local.unflatten(flat)


def rank_operator_factory(rank: int, world: int) -> OperatorFactory:
    """The operator factory of rank ``rank``: a :class:`HessianOperator` of its shard of the batches, all-reduced.

    Whether first-order graphs are cached is decided on all samples, as a one-process analysis decides it,
    so every rank computes its batches' products the same way that analysis does.

    Raises:
        ConfigError: fewer batches than ranks.
    """

    def make(model: nn.Module, batches: list[Batch], device: torch.device) -> AllReducedOperator:
        if len(batches) < world:
            raise ConfigError(f"--nproc {world} needs at least {world} batches of samples, the analysis has {len(batches)}: "
                              "lower --nproc, or lower --batch-size / raise --samples.")
        total = sum(int(len(y)) for _, y in batches)
        dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
        cache = total <= CACHE_MAX_EXAMPLES and dim <= CACHE_MAX_PARAMS
        local = HessianOperator(model, cross_entropy, shard(batches, rank, world), device=device, cache_graph=cache)
        return AllReducedOperator(local, total)

    return make


def _rank_main(rank: int, fn: Callable[..., Any], world: int, rendezvous: str, backend: str, out: str, threads: int,
               args: tuple) -> None:
    """One spawned rank: join the group, run ``fn(rank, world, *args)``, rank 0 keeps its result; errors are written for the parent."""
    torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=rendezvous, rank=rank, world_size=world, timeout=timedelta(minutes=30))
    try:
        result = fn(rank, world, *args)
        if rank == 0:
            with open(os.path.join(out, "result.pkl"), "wb") as file:
                pickle.dump(result, file)
    except LandscapeError as err:
        Path(out, f"error-{rank}.json").write_text(json.dumps({"type": type(err).__name__, "message": str(err)}))
        raise
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., T], nproc: int, *args: Any, device: torch.device, threads: int | None = None) -> T:
    """Run ``fn(rank, nproc, *args)`` in ``nproc`` spawned processes of one process group; return rank 0's result.

    ``fn`` must be a module-level function (it is pickled to the new processes). The group uses gloo when
    ``device`` is a CPU and NCCL when it is a GPU; it meets through a file in a private temporary folder.

    Args:
        fn: what each rank runs.
        nproc: the number of ranks.
        args: ``fn``'s further arguments (picklable).
        device: where the ranks compute (its type chooses the backend).
        threads: torch's CPU threads per rank (default: this process's count divided among the ranks).

    Raises:
        LandscapeError: a rank raised one (re-raised here as its own type with its message).
        RuntimeError: a rank failed otherwise (its traceback is in the message).
    """
    threads = threads if threads is not None else max(1, torch.get_num_threads() // nproc)
    backend = "nccl" if device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory(prefix="landscape-ranks-") as out:
        rendezvous = Path(out).resolve().joinpath("rendezvous").as_uri()
        try:
            mp.start_processes(_rank_main, args=(fn, nproc, rendezvous, backend, out, threads, args), nprocs=nproc,
                               join=True, start_method="spawn")
        except mp.ProcessRaisedException:
            errors = sorted(Path(out).glob("error-*.json"))
            if errors:
                error = json.loads(errors[0].read_text())
                raise _ERRORS.get(error["type"], LandscapeError)(error["message"]) from None
            raise
        with open(os.path.join(out, "result.pkl"), "rb") as file:
            return pickle.load(file)  # noqa: S301 - written a moment ago by our own rank 0


def _analysis_rank(rank: int, world: int, path: str, settings: HessianSettings, data_dir: str | None,
                   eigenvectors_out: str | None, foreign: Any) -> HessianReport:
    """Rank ``rank``'s replicated analysis on its shard; only rank 0 writes the eigenvectors."""
    if settings.device.startswith("cuda"):
        settings = replace(settings, device=f"cuda:{rank % torch.cuda.device_count()}")
    return analyze_checkpoint(path, settings, data_dir=data_dir, eigenvectors_out=eigenvectors_out if rank == 0 else None,
                              foreign=foreign, operator_factory=rank_operator_factory(rank, world))


def analyze_checkpoint_parallel(
    path: str | os.PathLike[str],
    settings: HessianSettings = HessianSettings(),
    *,
    nproc: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    eigenvectors_out: str | os.PathLike[str] | None = None,
    foreign: Any = None,
    threads: int | None = None,
    **options: Any,
) -> HessianReport:
    """:func:`~landscape.hessian.analysis.analyze_checkpoint` with its Hessian-vector products split over ``nproc`` processes.

    With ``nproc == 1`` it is :func:`~landscape.hessian.analysis.analyze_checkpoint` itself (``options``:
    ``progress``, ``measures``). With more, ``nproc`` ranks each hold a contiguous block of the analysis's
    batches (``settings.batch_size`` samples each; at least one per rank) and sum their products with one
    float64 all-reduce; the eigensolver, trace and density run on every rank with the same seeds, so the
    report equals the one-process report up to float64 summation order (``config["nproc"]`` records
    ``nproc``). On GPUs rank ``r`` uses ``cuda:r``.

    Raises:
        ConfigError: ``nproc`` below 1, more ranks than GPUs, the PyHessian backend, flatness measures or a
            progress callback with ``nproc > 1``, or fewer batches than ranks; and what
            :func:`~landscape.hessian.analysis.analyze_checkpoint` raises.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}.")
    if nproc == 1:
        return analyze_checkpoint(path, settings, data_dir=data_dir, eigenvectors_out=eigenvectors_out, foreign=foreign, **options)
    if settings.backend != "fedlandscape":
        raise ConfigError("--nproc > 1 needs the fedlandscape backend (PyHessian runs in one process).")
    if options.get("measures") is not None or options.get("progress") is not None:
        raise ConfigError("--nproc > 1 computes eigenvalues, trace and density; flatness measures (--measures) and live "
                          "progress need --nproc 1.")
    device = resolve_device(settings.device)  # before anything is spawned: a missing GPU is said here
    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        raise ConfigError(f"--nproc {nproc} puts one rank on each GPU, and this machine has {torch.cuda.device_count()}.")
    settings = replace(settings, device=str(device) if device.type == "cpu" else "cuda")
    report = run_ranks(_analysis_rank, nproc, str(path), settings, None if data_dir is None else str(data_dir),
                       None if eigenvectors_out is None else str(eigenvectors_out), foreign, device=device, threads=threads)
    report.config["nproc"] = nproc
    return report
