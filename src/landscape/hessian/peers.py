"""Adapters that run the peer libraries (PyHessian 0.1, hessian-eigenthings 1.0) on the same model and data.

Used by ``--backend pyhessian`` and by ``bench/bench_hessian.py`` for cross-checks. Each adapter
works on a private copy of the model on the requested device (PyHessian switches the model to eval
mode and leaves graph-carrying ``.grad`` tensors behind), with the data moved there once, seeds the
peer's random draws from ``seed``, counts the Hessian-vector products, and reports a peer's crash as
a message instead of raising. Both peers run in full float32 like the engine (no TF32 on a GPU).
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from fedtrain.errors import ConfigError
from landscape.hessian.hvp import full_precision
from landscape.hessian.trace import mean_and_stderr

__all__ = ["pyhessian_analysis", "eigenthings_operator", "counting_hvps", "peer_scope"]

INSTALL_HINT = "pip install 'fedlandscape[peers]' (hessian-eigenthings) or pip install pyhessian==0.1"


def _import(name: str) -> Any:
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as err:
        raise ConfigError(f"The peer library {name!r} is not installed ({err}). Install it with: {INSTALL_HINT}.") from err


@contextlib.contextmanager
def counting_hvps(module: Any, attribute: str) -> Iterator[list[int]]:
    """Count calls of ``module.attribute`` (a peer's HVP function) inside the block; restored on exit."""
    original = getattr(module, attribute)
    counter = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original(*args, **kwargs)

    setattr(module, attribute, counted)
    try:
        yield counter
    finally:
        setattr(module, attribute, original)


def pyhessian_analysis(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    top_k: int = 5,
    tol: float = 1e-3,
    max_iter: int = 100,
    trace: bool = True,
    trace_max_iter: int = 100,
    density: bool = True,
    density_steps: int = 100,
    density_probes: int = 1,
    seed: int = 0,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Top-k eigenvalues, trace and density through PyHessian 0.1 (single-batch mode), on ``device``.

    On a CUDA device PyHessian is built with ``cuda=True``: it then calls ``.cuda()`` on the inputs
    and puts its vectors on the *current* CUDA device, and expects the model there; the adapter
    gives it a copy of the model and the data on ``device`` and makes ``device`` current for the call.
    PyHessian draws from the global RNGs (its power-iteration starts on the CPU, its Rademacher
    probes of trace and density on the device, so those differ between a CPU and a GPU run); it runs
    under ``torch.random.fork_rng`` of the CPU and ``device`` seeded with ``seed``, so the caller's RNG
    states are untouched and the run is reproducible.

    Args:
        model: the network (a private copy is analysed).
        inputs: model inputs (one batch: PyHessian's single-batch mode).
        labels: class labels.
        top_k: number of top eigenvalues (power iteration with deflation).
        tol: PyHessian's relative-change tolerance of the eigenvalues and the trace.
        max_iter: power iterations per eigenvalue.
        trace: whether to run its Hutchinson trace, with at most ``trace_max_iter`` probes.
        trace_max_iter: see ``trace``.
        density: whether to run its SLQ density, ``density_probes`` runs of ``density_steps`` steps.
        density_steps: see ``density``.
        density_probes: see ``density``.
        seed: seed of the global RNGs for the run.
        device: where to run (default: the model's device).

    Returns:
        ``{"eigenvalues", "trace", "density", "hvps", "seconds", "errors"}``; a quantity whose
        PyHessian call crashed is ``None`` and its error is in ``errors``.
    """
    hessian_module = _import("pyhessian.hessian")
    criterion = torch.nn.CrossEntropyLoss()
    device = _model_device(model) if device is None else torch.device(device)
    result: dict[str, Any] = {"eigenvalues": None, "trace": None, "density": None, "hvps": {}, "seconds": {}, "errors": {}}
    with peer_scope(device, seed), warnings.catch_warnings():
        # PyHessian calls backward(create_graph=True), which warns about a reference cycle on its private copy
        warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
        start = time.perf_counter()
        engine = hessian_module.hessian(copy.deepcopy(model).to(device), criterion, data=(inputs.to(device), labels.to(device)),
                                        cuda=device.type == "cuda")
        setup = time.perf_counter() - start
        steps: list[tuple[str, Callable[[], Any]]] = [("eigenvalues", lambda: engine.eigenvalues(maxIter=max_iter, tol=tol, top_n=top_k))]
        if trace:
            steps.append(("trace", lambda: engine.trace(maxIter=trace_max_iter, tol=tol)))
        if density:
            steps.append(("density", lambda: engine.density(iter=density_steps, n_v=density_probes)))
        for name, call in steps:
            with counting_hvps(hessian_module, "hessian_vector_product") as counter:
                start = time.perf_counter()
                try:
                    out = call()
                except Exception as err:  # noqa: BLE001 - a peer's crash is a result, reported as such
                    result["errors"][name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    out = None
                result["seconds"][name] = time.perf_counter() - start + (setup if name == "eigenvalues" else 0.0)
                result["hvps"][name] = counter[0]
            if out is None:
                continue
            if name == "eigenvalues":
                result["eigenvalues"] = sorted((float(v) for v in out[0]), reverse=True)
            elif name == "trace":
                samples = [float(s) for s in out]
                mean, stderr = mean_and_stderr(samples)
                result["trace"] = {"estimate": mean, "stderr": stderr if len(samples) > 1 else None,
                                   "method": "pyhessian-hutchinson", "num_matvecs": len(samples)}
            else:
                result["density"] = {"nodes": out[0], "weights": out[1]}
    return result


def eigenthings_operator(model: nn.Module, inputs: Tensor, labels: Tensor, batch_size: int,
                         device: torch.device | None = None) -> Any:
    """A hessian-eigenthings ``HessianOperator`` (double backward) on a private eval-mode copy of ``model`` on ``device``.

    hessian-eigenthings computes on the device of the model's parameters; the batches are moved there
    once (default device: the model's). Its products are not wrapped in :func:`full_precision`: call
    them inside it (as ``bench/bench_hessian.py`` does) for full float32 on a GPU.
    """
    eigenthings = _import("hessian_eigenthings")
    device = _model_device(model) if device is None else torch.device(device)
    inputs, labels = inputs.to(device), labels.to(device)
    batches = [(inputs[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]
    return eigenthings.HessianOperator(
        copy.deepcopy(model).to(device).eval(), batches, eigenthings.supervised_loss(torch.nn.functional.cross_entropy)
    )


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@contextlib.contextmanager
def peer_scope(device: torch.device, seed: int) -> Iterator[None]:
    """The scope of a peer's run on ``device``: global RNGs seeded with ``seed`` (restored after), ``device``
    the current CUDA device (PyHessian's ``cuda=True`` means "the current one"), full float32 (:func:`full_precision`)."""
    cuda = device.type == "cuda"
    index = device.index if device.index is not None else (torch.cuda.current_device() if cuda else None)
    with torch.random.fork_rng(devices=[index] if cuda else []), full_precision(device), \
            (torch.cuda.device(index) if cuda else contextlib.nullcontext()):
        if cuda:  # this device's generator only: fork_rng restores the CPU's and this device's, no other
            torch.default_generator.manual_seed(seed)
            torch.cuda.manual_seed(seed)
        else:
            torch.manual_seed(seed)
        yield
