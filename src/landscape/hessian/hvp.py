"""Hessian-vector products of a model's loss on one batch, as pure functions of explicit parameters.

``make_hvp`` returns ``hvp(params, batch, v) -> H v`` where ``H`` is the Hessian of the mean loss of
one batch with respect to ``params``. Two methods give the same numbers:

* ``"fwd-rev"``: forward-over-reverse, ``jvp(grad(loss), (params,), (v,))`` (``torch.func``), the
  cheapest exact HVP (Pearlmutter 1994; Dagréou et al. 2024, "How to compute Hessian-vector products?").
* ``"double-backward"``: reverse-over-reverse through ``torch.autograd.grad(create_graph=True)``, for
  layers without forward-mode support.

Neither touches the module's parameters, ``.grad`` or ``requires_grad``: gradients are taken with
respect to the detached tensors passed in ``params``. Both run in the parameters' own precision,
whatever the caller's context: :func:`full_precision` switches autocast off and, on a GPU, TF32 off
(mixed precision moves a product by ~1e-3 relative, more than the tolerance of the eigensolver).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp

from fedtrain.device import ieee_float32
from fedtrain.errors import ConfigError

__all__ = ["HVP_METHODS", "HvpFunction", "make_hvp", "check_params", "detect_hvp_method", "full_precision"]

HVP_METHODS: tuple[str, ...] = ("fwd-rev", "double-backward")
Batch = tuple[Tensor, Tensor]
LossFunction = Callable[[Tensor, Tensor], Tensor]
HvpFunction = Callable[[dict[str, Tensor], Batch, dict[str, Tensor]], dict[str, Tensor]]


def check_params(params: object) -> dict[str, Tensor]:
    """Validate that ``params`` is a ``dict[str, Tensor]`` and return it.

    Raises:
        TypeError: ``params`` is a list or another container.
    """
    if not isinstance(params, dict) or not all(isinstance(p, Tensor) for p in params.values()):
        raise TypeError(
            f"params must be a dict[str, Tensor], got {type(params).__name__}. "
            "Use {n: p.detach() for n, p in model.named_parameters()}."
        )
    return params


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """No mixed precision inside the body: autocast off for ``device``'s type, and full float32 (no TF32) on CUDA.

    An enclosing ``torch.autocast`` (a training loop's bf16/fp16 context, say) would otherwise run the
    products' matrix multiplications and convolutions in half precision; this turns it off rather
    than refusing, so a Hessian is always computed in the dtype of its parameters.
    """
    with torch.autocast(device_type=device.type, enabled=False), ieee_float32(device):
        yield


def make_hvp(model: nn.Module, loss_fn: LossFunction, *, method: Literal["fwd-rev", "double-backward"] = "fwd-rev") -> HvpFunction:
    """Build the Hessian-vector product of ``loss_fn(model(x), y)`` on one batch.

    .. math:: \\mathrm{hvp}(\\theta, (x, y), v) = \\nabla^2_\\theta\\, \\ell(f_\\theta(x), y)\\, v

    Args:
        model: the network; evaluated with ``functional_call`` in whatever train/eval mode it is in.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean over the batch).
        method: ``"fwd-rev"`` (forward-over-reverse) or ``"double-backward"``.

    Returns:
        ``hvp(params, batch, v)`` mapping parameter dicts to a dict of the same shapes.

    Raises:
        ConfigError: unknown ``method``.
    """
    if method not in HVP_METHODS:
        raise ConfigError(f"method must be one of {HVP_METHODS}, got {method!r}.")

    def loss_of(params: dict[str, Tensor], inputs: Tensor, targets: Tensor) -> Tensor:
        return loss_fn(functional_call(model, params, (inputs,)), targets)

    if method == "fwd-rev":
        grad_fn = grad(loss_of)

        def hvp_fwd_rev(params: dict[str, Tensor], batch: Batch, v: dict[str, Tensor]) -> dict[str, Tensor]:
            inputs, targets = batch
            check_params(params)
            # torch.func needs grad mode on; nothing is recorded on the caller's tensors
            with torch.enable_grad(), full_precision(inputs.device):
                _, hv = jvp(lambda p: grad_fn(p, inputs, targets), (params,), (v,))
            return {name: t.detach() for name, t in hv.items()}

        return hvp_fwd_rev

    def hvp_double_backward(params: dict[str, Tensor], batch: Batch, v: dict[str, Tensor]) -> dict[str, Tensor]:
        inputs, targets = batch
        check_params(params)
        with torch.enable_grad(), full_precision(inputs.device):
            # fresh leaves sharing storage: the caller's tensors keep requires_grad and .grad untouched
            leaves = {name: p.detach().requires_grad_(True) for name, p in params.items()}
            loss = loss_of(leaves, inputs, targets)
            grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True, allow_unused=True)
            dot = sum(((g * v[name]).sum() for name, g in zip(leaves, grads) if g is not None), torch.zeros((), device=inputs.device))
            if not dot.requires_grad:  # the loss does not depend on any parameter twice
                return {name: torch.zeros_like(p) for name, p in params.items()}
            hv = torch.autograd.grad(dot, list(leaves.values()), allow_unused=True)
        return {name: torch.zeros_like(params[name]) if h is None else h.detach() for name, h in zip(leaves, hv)}

    return hvp_double_backward


def detect_hvp_method(model: nn.Module, loss_fn: LossFunction, params: dict[str, Tensor], batch: Batch) -> str:
    """``"fwd-rev"`` when forward-mode AD works through ``model`` on ``batch``, else ``"double-backward"``.

    Tries one forward-over-reverse product on the first two samples of ``batch``; a layer without
    a forward-mode formula raises ``NotImplementedError``/``RuntimeError``, which selects the fallback.
    """
    inputs, targets = batch
    probe = {name: torch.zeros_like(p) for name, p in params.items()}
    try:
        make_hvp(model, loss_fn, method="fwd-rev")(params, (inputs[:2], targets[:2]), probe)
    except (NotImplementedError, RuntimeError):
        return "double-backward"
    return "fwd-rev"
