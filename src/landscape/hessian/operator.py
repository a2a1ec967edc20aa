"""Linear operators the estimators act on: the dataset Hessian of a model, or a dense symmetric matrix.

Every estimator in :mod:`landscape.hessian` (Lanczos, power iteration, trace, density) takes a
``LinearOperator``: an object with ``dim``, ``device``, ``matvec(v)`` and ``matmat(V)`` on flat float64
vectors that live on ``device`` (the estimators keep their vectors and bases there).
A dense ``Tensor`` is accepted wherever an operator is (wrapped by :func:`as_operator`), so every
estimator can be tested on a matrix with a known spectrum. :class:`HessianOperator` also owns the
conversion between flat vectors and parameter dicts (``flatten`` / ``unflatten``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from fedtrain.errors import ConfigError
from landscape.hessian.hvp import Batch, HvpFunction, LossFunction, detect_hvp_method, full_precision, make_hvp

__all__ = ["LinearOperator", "DenseOperator", "HessianOperator", "as_operator", "split_batches", "CACHE_MAX_EXAMPLES", "CACHE_MAX_PARAMS"]

# Bounds under which HessianOperator keeps the first-order graphs by default (memory: the activations of
# CACHE_MAX_EXAMPLES samples and their double-backward buffers, a few hundred MB for the paper's CNN).
CACHE_MAX_EXAMPLES = 4096
CACHE_MAX_PARAMS = 2_000_000
# How matmat computes k products; "loop" is the default because it is faster on CPU (bench/results/matmat.txt).
MATMAT_METHODS: tuple[str, ...] = ("loop", "batched")
# Parameter dtypes refused: a Hessian in half precision is mixed precision (products off by ~1e-3 relative).
_HALF_DTYPES = (torch.float16, torch.bfloat16)


@runtime_checkable
class LinearOperator(Protocol):
    """A symmetric linear map on flat float64 vectors of length ``dim`` held on ``device``."""

    dim: int
    device: torch.device

    def matvec(self, vector: Tensor) -> Tensor: ...

    def matmat(self, matrix: Tensor) -> Tensor: ...


class DenseOperator:
    """A dense symmetric matrix seen as a :class:`LinearOperator` (float64).

    Raises:
        ConfigError: the matrix is not square.
    """

    def __init__(self, matrix: Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ConfigError(f"A dense operator must be a square matrix, got shape {tuple(matrix.shape)}.")
        self.matrix = matrix.detach().to(torch.float64)
        self.dim = int(matrix.shape[0])
        self.device = self.matrix.device

    def matvec(self, vector: Tensor) -> Tensor:
        """``A v``."""
        return self.matrix @ vector

    def matmat(self, matrix: Tensor) -> Tensor:
        """``A V`` for ``V`` of shape ``(dim, k)``."""
        return self.matrix @ matrix


def as_operator(operator: LinearOperator | Tensor) -> LinearOperator:
    """Wrap a dense ``Tensor`` in :class:`DenseOperator`; pass an operator through.

    Raises:
        TypeError: neither a tensor nor an object with ``dim``/``device``/``matvec``/``matmat``.
    """
    if isinstance(operator, Tensor):
        return DenseOperator(operator)
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"Expected a LinearOperator (dim, device, matvec, matmat) or a dense Tensor, got {type(operator).__name__}.")
    return operator


def split_batches(inputs: Tensor, labels: Tensor, batch_size: int) -> list[Batch]:
    """Consecutive batches of at most ``batch_size`` samples, in order (the last one may be smaller).

    Raises:
        ConfigError: ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
    return [(inputs[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]


class HessianOperator:
    """The Hessian of the mean loss over a fixed sequence of batches, as a :class:`LinearOperator`.

    .. math:: H = \\sum_b \\frac{n_b}{N} \\nabla^2_\\theta \\frac{1}{n_b} \\sum_{i \\in b} \\ell(f_\\theta(x_i), y_i)

    with ``n_b`` the size of batch ``b`` and ``N`` the total, i.e. the Hessian of the mean loss over
    all samples whatever the batch sizes. Products are computed batch by batch in the parameter dtype
    (never in mixed precision: autocast and TF32 are off inside, see
    :func:`~landscape.hessian.hvp.full_precision`) and accumulated in float64. The operator works on a
    private copy of the model on ``device`` (switched to eval mode when ``bn_mode="eval"``), so the
    caller's module, weights, device, ``.grad``, ``requires_grad`` and train/eval mode are never
    touched. Parameters with ``requires_grad=False`` are held fixed. The batches are moved to
    ``device`` once, at construction; vectors in and out are float64 on ``device`` and a product
    reads nothing back to the host.

    Args:
        model: the network.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` with mean reduction.
        batches: ``(inputs, targets)`` pairs; their order and content are fixed (no augmentation).
        method: ``"auto"`` (forward-over-reverse when the layers support forward mode, else double
            backward), ``"fwd-rev"`` or ``"double-backward"``. The method used is ``self.method``.
        dtype: compute dtype (``torch.float64`` for exact tests); default: the parameters' dtype.
            float16/bfloat16 are refused.
        device: where the model copy, the data and the products live; default: the model's device.
        bn_mode: ``"eval"`` (BatchNorm running statistics, dropout off) or ``"train"`` (the module as
            given, which must then be deterministic).
        check_deterministic: compare two products of the same vector on the first batch and raise
            when they differ.
        cache_graph: keep each batch's first-order graph (the gradient, built once with
            ``create_graph=True``) so that a product is a single backward pass through it instead of a
            new forward and backward (PyHessian does this for one batch); ``"auto"`` caches when the
            data have at most :data:`CACHE_MAX_EXAMPLES` samples and the model at most
            :data:`CACHE_MAX_PARAMS` parameters, which bounds the memory the graphs hold.
        matmat_method: ``"loop"`` (``k`` products in ``k`` passes) or ``"batched"`` (``k`` products
            per batch in one vectorised call, one pass); see :meth:`matmat`.

    Raises:
        ConfigError: no batches, no trainable parameters, half-precision parameters, unknown options, or
            (with ``check_deterministic``) a product that is not finite.
        RuntimeError: the two products of the determinism check differ.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        batches: Sequence[Batch],
        *,
        method: Literal["auto", "fwd-rev", "double-backward"] = "auto",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        bn_mode: Literal["eval", "train"] = "eval",
        check_deterministic: bool = True,
        cache_graph: bool | Literal["auto"] = "auto",
        matmat_method: Literal["loop", "batched"] = "loop",
    ) -> None:
        if not batches:
            raise ConfigError("HessianOperator needs at least one batch of data: pass a non-empty list of (inputs, targets).")
        if bn_mode not in ("eval", "train"):
            raise ConfigError(f"bn_mode must be 'eval' or 'train', got {bn_mode!r}.")
        if device is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.device = torch.device(device)
        # A private copy: modes, buffers and device of the caller's module stay as they are.
        self.model = copy.deepcopy(model).to(device=self.device, dtype=dtype)
        if bn_mode == "eval":
            self.model.eval()
        self.bn_mode = bn_mode
        self.params = {name: p.detach() for name, p in self.model.named_parameters() if p.requires_grad}
        if not self.params:
            raise ConfigError("The model has no parameter with requires_grad=True: there is no Hessian to compute. "
                              "Unfreeze the parameters the Hessian is wanted for.")
        self.dtype = next(iter(self.params.values())).dtype
        if self.dtype in _HALF_DTYPES:
            raise ConfigError(f"The model's parameters are {self.dtype}: a Hessian in half precision is not accurate "
                              "enough. Compute it in float32 or float64 (dtype=torch.float32, or model.float()).")
        self.batches = [(_to_device(x, self.device, self.dtype), y.to(self.device)) for x, y in batches]
        self.counts = [int(len(y)) for _, y in self.batches]
        self.num_examples = sum(self.counts)
        self.shapes = {name: p.shape for name, p in self.params.items()}
        self.dim = sum(p.numel() for p in self.params.values())
        self.loss_fn = loss_fn
        if method == "auto":
            method = detect_hvp_method(self.model, loss_fn, self.params, self.batches[0])  # type: ignore[assignment]
        self.method = method
        self.hvp: HvpFunction = make_hvp(self.model, loss_fn, method=method)  # type: ignore[arg-type]
        if check_deterministic:
            self._check_deterministic()
        if cache_graph == "auto":
            cache_graph = self.num_examples <= CACHE_MAX_EXAMPLES and self.dim <= CACHE_MAX_PARAMS
        self.cache_graph = bool(cache_graph)
        if matmat_method not in MATMAT_METHODS:
            raise ConfigError(f"matmat_method must be one of {', '.join(MATMAT_METHODS)}, got {matmat_method!r}.")
        self.matmat_method = matmat_method
        self._graphs = [self._first_order_graph(batch) for batch in self.batches] if self.cache_graph else []

    def _first_order_graph(self, batch: Batch) -> tuple[dict[str, Tensor], list[Tensor | None]]:
        """Leaves and the gradient of one batch's loss, with its graph kept for later products."""
        inputs, targets = batch
        with torch.enable_grad(), full_precision(self.device):
            leaves = {name: p.detach().requires_grad_(True) for name, p in self.params.items()}
            loss = self.loss_fn(functional_call(self.model, leaves, (inputs,)), targets)
            grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True, allow_unused=True)
        return leaves, list(grads)

    def _graphs_of_batches(self) -> Iterator[tuple[dict[str, Tensor], list[Tensor | None]]]:
        """Each batch's first-order graph: the cached one, or built now and dropped after use."""
        if self.cache_graph:
            yield from self._graphs
        else:
            for batch in self.batches:
                yield self._first_order_graph(batch)

    def _batch_products(self, tangent: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """``H_b v`` for every batch ``b``."""
        if not self.cache_graph:
            return [self.hvp(self.params, batch, tangent) for batch in self.batches]
        return [_graph_products(leaves, grads, tangent, batched=False) for leaves, grads in self._graphs]

    def _batch_matmats(self, tangents: dict[str, Tensor]) -> Iterator[dict[str, Tensor]]:
        """``H_b V`` for every batch ``b``, tangents and products stacked along a leading axis of size ``k``."""
        if self.cache_graph or self.method == "double-backward":
            for leaves, grads in self._graphs_of_batches():
                yield _graph_products(leaves, grads, tangents, batched=True)
            return
        batched_hvp = vmap(self.hvp, in_dims=(None, None, 0))
        for batch in self.batches:
            yield batched_hvp(self.params, batch, tangents)

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        """Parameter-shaped tensors as one float64 vector of length ``dim`` (parameter order, row-major).

        Tensors with a leading axis of size ``k`` (``k`` parameter-shaped tensors stacked) give the
        ``(dim, k)`` matrix whose columns they are; :meth:`unflatten` is the inverse.
        """
        pieces = []
        for name, shape in self.shapes.items():
            tensor = tensors[name]
            pieces.append(tensor.reshape(*tensor.shape[: tensor.ndim - len(shape)], -1).to(torch.float64))
        flat = torch.cat(pieces, dim=-1)
        return flat.T if flat.ndim == 2 else flat

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """A flat vector as new parameter-shaped tensors in the compute dtype on the device, keyed by parameter name.

        A ``(dim, k)`` matrix gives its ``k`` columns stacked along a leading axis: ``(k, *shape)``
        per parameter. The tensors never share memory with ``flat``.
        """
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = shape.numel()
            piece = flat[start : start + size].movedim(0, -1)
            out[name] = piece.reshape(*piece.shape[:-1], *shape).to(device=self.device, dtype=self.dtype, copy=True)
            start += size
        return out

    def matvec(self, vector: Tensor) -> Tensor:
        """``H v`` for a flat vector ``v`` of length ``dim`` (float64 result): one pass over the data.

        Raises:
            ConfigError: ``v`` is not of shape ``(dim,)``.
        """
        if vector.shape != (self.dim,):
            raise ConfigError(f"matvec expects a vector of shape ({self.dim},), got {tuple(vector.shape)}.")
        total = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        for product, count in zip(self._batch_products(self.unflatten(vector)), self.counts):
            total += (count / self.num_examples) * self.flatten(product)
        return total

    def matmat(self, matrix: Tensor) -> Tensor:
        """``H V`` for ``V`` of shape ``(dim, k)`` (float64 result).

        With ``matmat_method="loop"`` (the default) this is ``k`` calls of :meth:`matvec`: ``k``
        passes over the data. With ``"batched"`` it is one pass over the data, the ``k`` products of
        a batch in one vectorised call (``torch.func.vmap`` over the tangents of the
        forward-over-reverse product, or one ``is_grads_batched`` backward pass through the batch's
        first-order graph); on CPU that is 0.6-1.0x the speed of the loop for the paper's CNN
        (``bench/bench_matmat.py``), and it holds ``k`` products' activations at once.

        Raises:
            ConfigError: ``V`` is not of shape ``(dim, k)``.
        """
        if matrix.ndim != 2 or matrix.shape[0] != self.dim:
            raise ConfigError(f"matmat expects a matrix of shape ({self.dim}, k), got {tuple(matrix.shape)}.")
        if self.matmat_method == "loop":
            return torch.stack([self.matvec(matrix[:, j]) for j in range(matrix.shape[1])], dim=1)
        total = torch.zeros(self.dim, matrix.shape[1], dtype=torch.float64, device=self.device)
        for products, count in zip(self._batch_matmats(self.unflatten(matrix)), self.counts):
            total += (count / self.num_examples) * self.flatten(products)
        return total

    def _check_deterministic(self) -> None:
        generator = torch.Generator().manual_seed(0)
        probe = self.unflatten(torch.randn(self.dim, generator=generator, dtype=torch.float64))
        first = self.flatten(self.hvp(self.params, self.batches[0], probe))
        if not bool(torch.isfinite(first).all()):
            bad = [name for name, p in self.params.items() if not bool(torch.isfinite(p).all())]
            cause = (f"the parameters {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''} hold nan or inf" if bad
                     else "the loss on the first batch is not finite")
            raise ConfigError(f"The Hessian-vector product is not finite: {cause}. A Hessian needs a model whose loss is "
                              "finite on the data: check the model (a diverged training run?) and the inputs.")
        second = self.flatten(self.hvp(self.params, self.batches[0], probe))
        scale = float(first.abs().max()) or 1.0
        if not torch.allclose(first, second, rtol=1e-4, atol=1e-6 * scale):
            raise RuntimeError(
                "Hessian-vector products differ between two passes: the model or data is non-deterministic "
                "(dropout, BatchNorm in train mode, augmentation, shuffling). Put BN in eval mode "
                "(bn_mode='eval') or pass check_deterministic=False."
            )


def _graph_products(
    leaves: dict[str, Tensor], grads: list[Tensor | None], tangents: dict[str, Tensor], *, batched: bool
) -> dict[str, Tensor]:
    """``H_b v`` by one backward pass through a batch's first-order graph; with ``batched``, ``H_b V`` for
    tangents stacked along a leading axis, by one vectorised backward pass (``is_grads_batched``)."""
    lead = (next(iter(tangents.values())).shape[0],) if batched else ()
    pairs = [(g, tangents[name]) for name, g in zip(leaves, grads) if g is not None and g.requires_grad]
    if not pairs:  # the loss is at most linear in every parameter
        return {name: p.new_zeros(*lead, *p.shape) for name, p in leaves.items()}
    with full_precision(next(iter(leaves.values())).device):
        hv = torch.autograd.grad([g for g, _ in pairs], list(leaves.values()), grad_outputs=[t for _, t in pairs],
                                 retain_graph=True, allow_unused=True, is_grads_batched=batched)
    return {name: leaves[name].new_zeros(*lead, *leaves[name].shape) if h is None else h for name, h in zip(leaves, hv)}


def _to_device(inputs: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Inputs on ``device``, floating-point ones in ``dtype`` (one copy at most; none when already there)."""
    return inputs.to(device=device, dtype=dtype) if inputs.is_floating_point() else inputs.to(device)
