"""Cohort-vectorised local training: the K sampled clients' local steps as one ``torch.func.vmap`` computation.

:func:`fedtrain.client.client_update` trains one client after another on one model, each step a few small
kernels: on a GPU the round is bound by kernel launches, not by arithmetic. Here the sampled clients'
weights are stacked along a new leading axis (one row per client, what ``torch.func.stack_module_state``
builds from K modules, built directly from the global state dict) and every local step of every client is
one call of

.. math::

    \\mathrm{vmap}_k\\Big[\\, w_k \\leftarrow w_k - \\eta_l\\, d_k, \\quad
    d_k = \\beta b_k + \\nabla L_{B_k}(w_k + \\varepsilon_k) + \\lambda w_k \\,\\Big]

over ``functional_call`` + ``torch.func.grad``, with :math:`\\varepsilon_k = 0` (SGD), SAM's
:math:`\\rho g_k/\\lVert g_k\\rVert` or ASAM's :math:`\\rho T_k^2 g_k/\\lVert T_k g_k\\rVert`, each norm taken
over client :math:`k`'s own gradient only (never across clients), :math:`b_k` its momentum buffer
(PyTorch's SGD convention, the first buffer is the first direction), :math:`\\lambda` the weight decay at the
unperturbed weights (as :class:`~fedtrain.sam.SAM` with ``torch.optim.SGD``).

**Same inputs as the sequential path.** Each client's batches come from :func:`fedtrain.client._batches`
with its own generator (``fedtrain.round.client_generator``): the same order, the same crops and flips.

**Unequal shards** (masked padded steps). When the clients of a step hold batches of different sizes (the
last batch of an epoch, or shards of unequal size), the batches are zero-padded to the largest and the loss
is :math:`\\sum_i m_{ki} \\ell_{ki}` with :math:`m_{ki} = 1/b_k` on client ``k``'s ``b_k`` real rows and 0 on
the padding, which is the mean over the real rows; a client that has no batch left at a step (fewer local
steps) keeps its weights and momentum unchanged (the step is computed and discarded). Equal-size steps use
the plain mean, as the sequential path.

**Memory bound.** A chunk of ``c`` clients holds, per client, its weights, gradient and momentum buffer
(SAM/ASAM: also the perturbation and the second gradient), and the activations of one batch for the
backward pass. :func:`cohort_bytes_per_client` estimates it as

.. math::

    M_{\\text{client}} \\approx 4\\,\\text{bytes} \\times \\big(s P + 3 A B\\big), \\qquad s = 3\\ (\\text{SGD}),\\ 5\\ (\\text{SAM, ASAM}),

with :math:`P` the parameters, :math:`A` the activation floats of one sample (the outputs of every leaf
module, counted on one forward pass) and :math:`B` the batch size (3: the saved activations, their
gradients, and the workspace of the batched kernels). The cohort is trained in chunks of at most
``max_chunk`` clients (:func:`cohort_chunk`): the setting when given, otherwise on CUDA the most that fit in
half the free GPU memory, on the CPU the whole cohort. Chunks are independent computations (each client
depends only on its own data), so chunking changes rounding only.

**Exactness.** The vectorised kernels (convolutions with one weight per client run as grouped
convolutions, batched matmuls) sum in another order than the per-client kernels, so the result equals
the sequential path up to float32 rounding, not bit for bit; tests/fedtrain/test_cohort.py states and
checks the tolerance. Within the vmap mode a round depends only on its arguments, so a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest

import torch
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap
from torch.nn import functional as F

from fedtrain.client import ClientConfig, ClientShard, ClientUpdate, _batches, check_finite_loss
from fedtrain.config import COHORT_MODES, OPTIMIZERS, TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.sam import NORM_EPS, weight_mask

__all__ = [
    "CohortSettings",
    "resolve_cohort_mode",
    "cohort_settings",
    "vmap_unsupported",
    "cohort_bytes_per_client",
    "cohort_chunk",
    "cohort_record",
    "cohort_update",
]

# The rule of ``auto``. CPU: measured (bench/bench_cohort.py, bench/results/cohort-cpu.txt), the vectorised
# round took 1.4-2.5x the sequential one (grouped convolutions, one thread), so auto keeps the sequential
# reference. CUDA: a round of small per-client kernels is launch-bound, so auto vectorises; that speed-up is
# not measured yet (no GPU was lent; bench/gpu.sh measures it).
AUTO_MODE = {"cpu": "sequential", "cuda": "vmap"}


@dataclass(frozen=True)
class CohortSettings:
    """How a round trains its sampled clients.

    Attributes:
        mode: ``sequential`` (:func:`fedtrain.client.client_update` per client, the reference) or ``vmap``
            (:func:`cohort_update`); already resolved (:func:`resolve_cohort_mode`), never ``auto``.
        max_chunk: at most this many clients in one vectorised computation; 0 = :func:`cohort_chunk` decides.
        compile: wrap the vectorised step in ``torch.compile`` (opt-in; see bench/results/cohort-cpu.txt).
    """

    mode: str = "sequential"
    max_chunk: int = 0
    compile: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("sequential", "vmap"):
            raise ConfigError(f"A resolved cohort mode is 'sequential' or 'vmap', got {self.mode!r}; resolve 'auto' first.")
        if not isinstance(self.max_chunk, int) or self.max_chunk < 0:
            raise ConfigError(f"cohort_chunk (--cohort-chunk) must be an integer >= 0 (0 = automatic), got {self.max_chunk!r}.")


def vmap_unsupported(worker: nn.Module) -> str | None:
    """Why ``worker`` cannot be trained by :func:`cohort_update`, or None when it can.

    The vectorised step differentiates the parameters only; a model with buffers (BatchNorm running
    statistics) would need per-client buffer updates under vmap and stays on the sequential path.
    """
    buffers = [name for name, _ in worker.named_buffers()]
    if buffers:
        return f"the model has buffers ({', '.join(buffers[:3])}{', ...' if len(buffers) > 3 else ''}), e.g. BatchNorm statistics"
    frozen = [name for name, p in worker.named_parameters() if not p.requires_grad]
    if frozen:
        return f"the model has frozen parameters ({', '.join(frozen[:3])})"
    return None


def resolve_cohort_mode(mode: str, device: torch.device, worker: nn.Module) -> str:
    """The mode a requested ``--cohort`` runs on ``device``: ``auto`` is vmap on CUDA, sequential on the CPU.

    ``auto`` also stays sequential for a model :func:`vmap_unsupported` refuses.

    Raises:
        ConfigError: an unknown mode, or ``vmap`` asked for a model it cannot train.
    """
    if mode not in COHORT_MODES:
        raise ConfigError(f"cohort (--cohort) must be one of {', '.join(COHORT_MODES)}, got {mode!r}.")
    why = vmap_unsupported(worker)
    if mode == "vmap" and why is not None:
        raise ConfigError(f"--cohort vmap cannot train this model: {why}. Use --cohort sequential (or auto).")
    if mode == "auto":
        return "sequential" if why is not None else AUTO_MODE.get(device.type, "sequential")
    return mode


def cohort_settings(config: TrainConfig, worker: nn.Module, *, method_refusal: str | None = None) -> CohortSettings:
    """The run's cohort settings with ``config.cohort`` resolved for the worker's device and architecture.

    Args:
        config: the run's settings.
        worker: the run's scratch model, on its device.
        method_refusal: why the run's method cannot be trained vectorised
            (:meth:`fedtrain.methods.Method.vmap_refusal`), or ``None``: then ``auto`` is sequential and
            ``vmap`` is refused.

    Raises:
        ConfigError: ``vmap`` asked for a model or method it cannot train.
    """
    device = next(worker.parameters()).device
    if method_refusal is not None:
        if config.cohort == "vmap":
            raise ConfigError(f"--cohort vmap cannot train this run: {method_refusal}. Use --cohort sequential (or auto).")
        return CohortSettings(mode="sequential", max_chunk=config.cohort_chunk, compile=config.cohort_compile)
    mode = resolve_cohort_mode(config.cohort, device, worker)
    return CohortSettings(mode=mode, max_chunk=config.cohort_chunk, compile=config.cohort_compile)


def _activation_floats(worker: nn.Module, sample: torch.Tensor) -> int:
    """Floats output by the leaf modules of ``worker`` on one sample (one forward pass, nothing kept)."""
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    leaves = [m for m in worker.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            worker(sample)
    finally:
        for handle in handles:
            handle.remove()
    return total + sample.numel()


def cohort_bytes_per_client(worker: nn.Module, sample: torch.Tensor, cfg: ClientConfig) -> int:
    """The estimated memory of one client in a vectorised chunk: :math:`4 (s P + 3 A B)` bytes (module docstring).

    Args:
        worker: the run's architecture (its weights are not changed).
        sample: one normalised input ``(1, C, H, W)`` on the worker's device.
        cfg: the local optimiser (SAM/ASAM hold two more parameter copies) and the batch size.

    Returns:
        Bytes, an estimate for choosing chunk sizes.
    """
    params = sum(p.numel() for p in worker.parameters())
    state_copies = 3 if cfg.optimizer == "sgd" else 5
    return 4 * (state_copies * params + 3 * _activation_floats(worker, sample) * cfg.batch_size)


def cohort_chunk(
    num_clients: int, max_chunk: int, *, device: torch.device, bytes_per_client: Callable[[], int]
) -> int:
    """How many clients one vectorised computation trains.

    Args:
        num_clients: the cohort size K.
        max_chunk: the setting (0 = automatic).
        device: where the clients train.
        bytes_per_client: the estimate of :func:`cohort_bytes_per_client` (called only on CUDA without a setting).

    Returns:
        ``min(K, max_chunk)`` when set; on CUDA otherwise the clients that fit in half the free memory
        (at least 1); on the CPU K.
    """
    if max_chunk > 0:
        return max(1, min(num_clients, max_chunk))
    if device.type != "cuda":
        return num_clients
    free, _total = torch.cuda.mem_get_info(device)
    return max(1, min(num_clients, int(0.5 * free) // max(bytes_per_client(), 1)))


def cohort_record(settings: CohortSettings, shard_sizes: Sequence[int]) -> dict[str, object]:
    """What a run records about its cohort execution: mode, chunk setting, compile, and how unequal steps are handled.

    ``unequal_steps`` is ``"masked-padding"`` when, in vmap mode, the clients' shards differ in size, so their
    batches can differ at a step (:func:`cohort_update` then pads them with masked rows and steps), ``"none"``
    when every shard has the same size (every step has equal batches), and ``"n/a"`` on the sequential path.
    """
    # Clients of equal size have equal batches at every step (same count, same last batch); any two sizes differ somewhere.
    equal = len({int(n) for n in shard_sizes}) <= 1
    unequal = "n/a" if settings.mode == "sequential" else ("none" if equal else "masked-padding")
    return {"mode": settings.mode, "max_chunk": settings.max_chunk, "compile": settings.compile, "unequal_steps": unequal}


# --- the vectorised step -------------------------------------------------------------------------


def _global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One L2 norm over all tensors (of one client: inside vmap each tensor is that client's slice)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def _perturbation(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], cfg: ClientConfig, mask: Sequence[bool]
) -> list[torch.Tensor]:
    """SAM's or ASAM's ascent step for one client (the formulas of :mod:`fedtrain.sam`, vmap-able)."""
    if cfg.optimizer == "sam":
        scale = cfg.rho / (_global_norm(grads) + NORM_EPS)
        return [g * scale for g in grads]
    scaled = [g * (p.abs() + cfg.eta) if is_weight else g for p, g, is_weight in zip(params, grads, mask)]
    scale = cfg.rho / (_global_norm(scaled) + NORM_EPS)
    return [s * (p.abs() + cfg.eta) * scale if is_weight else s * scale for p, s, is_weight in zip(params, scaled, mask)]


def _make_step(worker: nn.Module, names: Sequence[str], cfg: ClientConfig, masked: bool) -> Callable[..., tuple]:
    """One local step of one client as a pure function; vmapped over the clients by the caller.

    The step maps ``(params, momentum, x, y, weights, active, lr)`` to ``(params, momentum, loss)``. With
    ``masked`` the loss is the row-weighted sum and an inactive client keeps its weights and momentum;
    without, every client is active and the loss is the plain batch mean (``weights`` unused). The
    learning rate is a tensor argument, not a constant of the function, so a compiled step serves every
    round of a run (the SWA cycle changes it) without recompiling.
    """
    mask = weight_mask(names)

    def loss_fn(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        logits = functional_call(worker, params, (x,))
        if not masked:
            return F.cross_entropy(logits, y)
        return (F.cross_entropy(logits, y, reduction="none") * weights).sum()

    def step(
        params: dict, momentum: dict, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, active: torch.Tensor, lr: torch.Tensor
    ) -> tuple:
        grads, loss = grad_and_value(loss_fn)(params, x, y, weights)
        if cfg.optimizer != "sgd":
            values = [params[n] for n in names]
            eps = _perturbation(values, [grads[n] for n in names], cfg, mask)
            grads = grad(loss_fn)({n: p + e for n, p, e in zip(names, values, eps)}, x, y, weights)
        new_params, new_momentum = {}, {}
        for n in names:
            d = grads[n] if cfg.weight_decay == 0 else torch.add(grads[n], params[n], alpha=cfg.weight_decay)
            if cfg.momentum != 0:
                d = momentum[n] * cfg.momentum + d
                new_momentum[n] = torch.where(active, d, momentum[n]) if masked else d
            new_params[n] = torch.where(active, params[n] - lr * d, params[n]) if masked else params[n] - lr * d
        return new_params, new_momentum, loss

    return step


def _cohort_batches(
    shards: Sequence[ClientShard], cfg: ClientConfig, generators: Sequence[torch.Generator]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]]:
    """Per local step: stacked inputs ``(K, b, ...)``, labels, loss weights (None when every batch has ``b`` rows), active flags, row counts.

    Client ``k``'s batches are those of the sequential path (``_batches`` with its own generator); a client
    with fewer steps is padded with an inactive all-zero batch.
    """
    streams = [_batches(shard, cfg, gen) for shard, gen in zip(shards, generators)]
    for step in zip_longest(*streams):
        real = [b for b in step if b is not None]
        rows = [0 if b is None else b[1].numel() for b in step]
        size = max(rows)
        device = real[0][0].device
        counts = torch.tensor(rows, device=device)
        if all(r == size for r in rows):
            yield torch.stack([b[0] for b in step]), torch.stack([b[1] for b in step]), None, counts > 0, counts
            continue
        x = real[0][0].new_zeros((len(step), size, *real[0][0].shape[1:]))
        y = real[0][1].new_zeros((len(step), size))
        weights = torch.zeros((len(step), size), dtype=x.dtype, device=device)
        for k, (b, r) in enumerate(zip(step, rows)):
            if b is not None and r > 0:
                x[k, :r], y[k, :r], weights[k, :r] = b[0], b[1], 1.0 / r
        yield x, y, weights, counts > 0, counts


def _train_chunk(
    worker: nn.Module,
    global_state: Mapping[str, torch.Tensor],
    shards: Sequence[ClientShard],
    cfg: ClientConfig,
    generators: Sequence[torch.Generator],
    steps: dict[bool, Callable[..., tuple]],
) -> list[ClientUpdate]:
    """:func:`cohort_update` for one chunk of clients."""
    names = list(global_state)
    k = len(shards)
    params = {n: global_state[n].detach().unsqueeze(0).expand(k, *global_state[n].shape).clone() for n in names}
    momentum = {n: torch.zeros_like(p) for n, p in params.items()} if cfg.momentum != 0 else {}
    device = params[names[0]].device
    lr = torch.tensor(cfg.lr, dtype=params[names[0]].dtype, device=device)
    loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
    num_steps = torch.zeros(k, dtype=torch.int64, device=device)
    for x, y, weights, active, counts in _cohort_batches(shards, cfg, generators):
        masked = weights is not None
        params, new_momentum, loss = steps[masked](params, momentum, x, y, weights if masked else counts, active, lr)
        momentum = new_momentum if cfg.momentum != 0 else momentum
        loss_sum += torch.where(active, loss.detach().to(torch.float64) * counts, 0.0)
        num_steps += active
    sizes = [shard.num_examples for shard in shards]
    means = (loss_sum / torch.tensor([max(n * cfg.local_epochs, 1) for n in sizes], dtype=torch.float64, device=device)).tolist()
    for mean_loss in means:
        check_finite_loss(mean_loss, cfg)
    counts_per_client = num_steps.tolist()
    return [
        ClientUpdate(
            delta={n: params[n][i] - global_state[n] for n in names},
            num_examples=sizes[i],
            metrics={"train_loss": means[i], "steps": float(counts_per_client[i])},
        )
        for i in range(k)
    ]


def cohort_update(
    worker: nn.Module,
    global_state: Mapping[str, torch.Tensor],
    shards: Sequence[ClientShard],
    cfg: ClientConfig,
    generators: Sequence[torch.Generator],
    settings: CohortSettings = CohortSettings(mode="vmap"),
) -> list[ClientUpdate]:
    """Train a cohort of clients from the global weights together and return their updates, in order.

    The vectorised twin of ``[client_update(worker, global_state, s, cfg, g) for s, g in zip(shards, generators)]``
    (same batches, same optimiser; equal up to float32 rounding, module docstring).

    Args:
        worker: a module of the run's architecture on the shards' device, used only as the function to call
            (its weights are neither read nor changed; it is put in train mode, as the sequential path does).
        global_state: the global model's state dict (not modified); its entries must be the worker's parameters.
        shards: the clients' data, one per client.
        cfg: the local optimiser for this round.
        generators: each client's generator for this round (data order, augmentation).
        settings: the chunk size and ``torch.compile`` option.

    Returns:
        One :class:`~fedtrain.client.ClientUpdate` per shard, as :func:`~fedtrain.client.client_update` returns it.

    Raises:
        ConfigError: an unknown optimiser, mismatched arguments, or a model :func:`vmap_unsupported` refuses.
        NonFiniteLossError: a client's mean training loss was NaN or infinite.
    """
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}.")
    if len(shards) != len(generators) or not shards:
        raise ConfigError(f"cohort_update needs one generator per shard and at least one shard; got {len(shards)} shards, {len(generators)} generators.")
    why = vmap_unsupported(worker)
    if why is not None:
        raise ConfigError(f"--cohort vmap cannot train this model: {why}. Use --cohort sequential.")
    names = [n for n, _ in worker.named_parameters()]
    if sorted(names) != sorted(global_state):
        raise ConfigError("The global state's entries are not the worker's parameters; build the worker with the run's architecture.")
    worker.train()
    steps = {}
    for masked in (False, True):
        # in_dims: params, momentum, x, y, weights (row counts when unmasked: unused), active; lr is shared
        fn = vmap(_make_step(worker, names, cfg, masked), in_dims=(0, 0, 0, 0, 0, 0, None))
        steps[masked] = torch.compile(fn, dynamic=False) if settings.compile else fn
    device = shards[0].device
    sample = shards[0].normalize(shards[0].images[:1])
    chunk = cohort_chunk(len(shards), settings.max_chunk, device=device,
                         bytes_per_client=lambda: cohort_bytes_per_client(worker, sample, cfg))
    updates: list[ClientUpdate] = []
    for start in range(0, len(shards), chunk):
        part = slice(start, start + chunk)
        updates += _train_chunk(worker, global_state, shards[part], cfg, generators[part], steps)
    return updates
