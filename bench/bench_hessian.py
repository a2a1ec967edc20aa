"""Benchmark: fedlandscape's Hessian engine vs PyHessian 0.1 and hessian-eigenthings 1.0.0a5, on a device, in one process.

Same model (the paper's CNN, briefly trained on the CPU with seeded SGD so that the spectrum has its
outliers and every device analyses the same weights), same data subset (moved to the device once),
same seed. Every engine runs in full float32 on the device (no autocast, no TF32: the engine's
``full_precision``, PyHessian and hessian-eigenthings inside the same scope); on CUDA every timing is
bracketed by ``torch.cuda.synchronize``, PyHessian is built with ``cuda=True``. Times include
building each engine's operator (our graph cache and determinism check, PyHessian's first
backward). Sections (``--sections``):

* ``eigen``: top-1 and top-5: wall time, products and the relative error against a tightly converged
  reference (our Lanczos with float64 products and bases, tol 1e-9, verified); the speed-up against
  PyHessian's fastest run within 1e-3 of the reference (goal: >= 3x for top-5); the cost of one
  product relative to one gradient (goal: <= 2.5).
* ``precision``: the Krylov basis in float64 (the engine) vs in float32 with every reduction
  accumulated in float64 (a variant defined here, for this measurement only): top-5 accuracy
  against the same reference, orthogonality of the eigenvectors, time, and the basis work per step.
* ``trace``: Hutchinson vs Hutch++ at equal budgets on a small MLP with an exact dense Hessian.

Not a test: a fast but wrong result shows up in the error column. The model is trained on the CPU
(TRAINING: 300 steps at lr 0.05 on Fashion-MNIST, 30 at lr 0.01 on CIFAR-shaped data), so a CPU and
a GPU run analyse the same weights and have the same reference.

    python bench/cifar_shaped.py --out runs/cifar-shaped
    .venv/bin/python bench/bench_hessian.py --device cpu --dataset cifar10 --data-dir runs/cifar-shaped --samples 256 \
        --repeats 3 --out bench/results/hessian-cpu-device.txt   # 10-20 minutes on 2 cores
    .venv/bin/python bench/bench_hessian.py --device cpu --samples 256 2048 --sections precision
    python bench/bench_hessian.py --device cuda --dataset cifar10 --data-dir runs/cifar-shaped --samples 2048 \
        --sections eigen precision                          # the GPU measurement of the issue

On a GPU, ``--batch-size 2048`` (one batch for both engines) is worth a second run: 256-sample
batches leave much of a large GPU idle.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import math
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor

from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.device import device_record, resolve_device, synchronize
from fedtrain.io import atomic_write_text
from fedtrain.models import build_model
from landscape.hessian import lanczos as lanczos_module
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.exact import dense_hessian
from landscape.hessian.hvp import full_precision, make_hvp
from landscape.hessian.krylov import LanczosBasis, orthogonalize
from landscape.hessian.lanczos import top_eigenpairs
from landscape.hessian.operator import HessianOperator, split_batches
from landscape.hessian.peers import counting_hvps, eigenthings_operator, peer_scope
from landscape.hessian.trace import trace_hutchinson, trace_hutchpp

GOAL_SPEEDUP, GOAL_HVP_RATIO, ACCURATE = 3.0, 2.5, 1e-3
# (SGD steps, learning rate) of the brief training before the analysis, per dataset. CIFAR-shaped data
# (bench/cifar_shaped.py) are separable by their mean colour: lr 0.05 with momentum diverges on them and
# a long run drives the loss, and the Hessian with it, to zero, so they get a short, gentler run.
TRAINING = {"fashion-mnist": (300, 0.05), "cifar10": (30, 0.01)}


def emit(lines: list[str], line: str) -> None:
    """Record a result line and print it at once (long runs show progress)."""
    lines.append(line)
    print(line, flush=True)


def timed(fn, device: torch.device = torch.device("cpu")):
    """``(fn(), seconds)``, the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def median_time(fn, device: torch.device, repeats: int = 5) -> float:
    fn()  # warm-up (kernel selection, caches)
    return sorted(timed(fn, device)[1] for _ in range(repeats))[repeats // 2]


def train_cnn(dataset, steps: int, seed: int, lr: float = 0.05) -> tuple[torch.nn.Module, float]:
    """The paper's CNN after ``steps`` seeded SGD steps on the CPU (batch 64, momentum 0.9), and its mean loss over the last 10.

    Raises:
        SystemExit: the training diverged (a non-finite loss).
    """
    model = build_model("cnn", input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=seed)
    images, labels = dataset.split("train")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (64,), generator=generator)
        loss = cross_entropy(model(dataset.normalize(images[idx])), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    if not all(map(math.isfinite, losses)):
        raise SystemExit(f"the CNN's training diverged at lr {lr} (loss {losses[-1]}): lower --lr or --train-steps")
    return model.eval(), sum(losses[-10:]) / len(losses[-10:])


def relative_error(values, reference) -> float:
    values = torch.as_tensor(values, dtype=torch.float64)
    reference = torch.as_tensor(reference[: len(values)], dtype=torch.float64)
    return float(((values - reference).abs() / reference.abs()).max())


class Problem:
    """One data subset on the device: the batches, the float32 operator factory and the float64 reference."""

    def __init__(self, model, dataset, num_examples: int, batch_size: int, seed: int, device: torch.device) -> None:
        inputs, labels = evaluation_tensors(dataset, "train", num_examples, seed)
        self.inputs, self.labels = inputs.to(device), labels.to(device)
        self.model, self.batch_size, self.seed, self.device = model, batch_size, seed, device
        self.batches = split_batches(self.inputs, self.labels, batch_size)
        exact = self.operator(dtype=torch.float64)  # float32 products cannot resolve residuals below ~1e-6
        self.reference = top_eigenpairs(exact, 5, tol=1e-9, max_matvecs=400, generator=torch.Generator().manual_seed(seed + 99))
        self.ref = self.reference.values.tolist()
        self.dim = exact.dim
        del exact

    def operator(self, **kwargs) -> HessianOperator:
        return HessianOperator(self.model, cross_entropy, self.batches, device=self.device, **kwargs)

    def describe(self) -> str:
        batches = "one batch" if len(self.batches) == 1 else f"batches of {self.batch_size}"
        return f"{len(self.labels)} samples ({batches}), {self.dim:,} parameters"

    def reference_line(self) -> str:
        r = self.reference
        return (f"reference (our Lanczos, float64 products and bases, tol 1e-9, {r.num_matvecs} HVPs, converged "
                f"{all(r.converged)}, verified {r.verified}): " + ", ".join(f"{v:.5f}" for v in self.ref))


def run_ours(problem: Problem, k: int, tol: float) -> tuple:
    pairs, seconds = timed(lambda: top_eigenpairs(problem.operator(), k, tol=tol, generator=torch.Generator().manual_seed(problem.seed)),
                           problem.device)
    return pairs.values.tolist(), pairs.num_matvecs, seconds, all(pairs.converged)


def run_pyhessian(problem: Problem, k: int, tol: float) -> tuple:
    ph = importlib.import_module("pyhessian.hessian")  # the module (the package rebinds the name to the class)
    device, criterion = problem.device, torch.nn.CrossEntropyLoss()
    with peer_scope(device, problem.seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = copy.deepcopy(problem.model).to(device)
        synchronize(device)
        start = time.perf_counter()
        if len(problem.batches) == 1:
            engine = ph.hessian(model, criterion, data=problem.batches[0], cuda=device.type == "cuda")
        else:  # PyHessian's full-dataset mode: a loader of batches, as its README does for large sets
            engine = ph.hessian(model, criterion, dataloader=problem.batches, cuda=device.type == "cuda")
        full_products = [0]
        if len(problem.batches) > 1:  # one dataloader_hv_product per vector (it calls hessian_vector_product per batch)
            per_dataset = engine.dataloader_hv_product

            def counted(v):
                full_products[0] += 1
                return per_dataset(v)

            engine.dataloader_hv_product = counted
        with counting_hvps(ph, "hessian_vector_product") as counter:
            values, _ = engine.eigenvalues(maxIter=200, tol=tol, top_n=k)
        synchronize(device)
        seconds = time.perf_counter() - start
    return sorted((float(v) for v in values), reverse=True), full_products[0] or counter[0], seconds, None


def run_eigenthings(problem: Problem, k: int, max_iter: int | None) -> tuple:
    import hessian_eigenthings as he

    with full_precision(problem.device):
        operator = eigenthings_operator(problem.model, problem.inputs, problem.labels, batch_size=len(problem.labels),
                                        device=problem.device)
        result, seconds = timed(lambda: he.lanczos(operator, k=k, max_iter=max_iter, tol=1e-3, which="LA", seed=problem.seed),
                                problem.device)
    order = torch.argsort(result.eigenvalues.cpu(), descending=True)
    steps = max_iter if max_iter is not None else min(2 * k, operator.size - 1)
    return result.eigenvalues.cpu()[order].double().tolist(), steps, seconds, all(result.converged.cpu()[order].tolist())


def best_of(runs: dict, repeats: int) -> dict[str, tuple]:
    """Each run's ``(values, products, seconds, flag)`` with the best time of ``repeats`` rounds, the runs interleaved
    so that a burst of load on a shared machine slows one round, not one engine (results are deterministic)."""
    results: dict[str, tuple] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            values, products, seconds, flag = run()
            best = min(seconds, results[name][2]) if name in results else seconds
            results[name] = (values, products, best, flag)
    return results


def product_costs(problem: Problem) -> dict[str, float]:
    """Median seconds of one gradient and of one product: on one batch per method, and over all the data."""
    from torch.func import functional_call, grad

    operator, device = problem.operator(), problem.device
    params, batch = operator.params, operator.batches[0]
    tangent = operator.unflatten(torch.randn(operator.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    gradient = grad(lambda p, x, y: cross_entropy(functional_call(operator.model, p, (x,)), y))
    fwd_rev = make_hvp(operator.model, cross_entropy, method="fwd-rev")
    double_backward = make_hvp(operator.model, cross_entropy, method="double-backward")
    vector = torch.randn(operator.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)

    def full_gradient():
        with full_precision(device):
            return [gradient(params, x, y) for x, y in operator.batches]

    with full_precision(device):
        return {
            "gradient": median_time(lambda: gradient(params, *batch), device),
            "fwd-rev": median_time(lambda: fwd_rev(params, batch, tangent), device),
            "double-backward": median_time(lambda: double_backward(params, batch, tangent), device),
            "full gradient": median_time(full_gradient, device),
            "operator matvec": median_time(lambda: operator.matvec(vector), device),
            "cached": operator.cache_graph,
        }


def bench_eigen(problem: Problem, lines: list[str], eigenthings: bool, repeats: int = 1) -> None:
    emit(lines, f"{'k':>2} {'engine':<34} {'seconds':>8} {'HVPs':>5} {'max rel err':>11} {'speed-up vs pyhessian at <=1e-3':>22}")
    for k in (1, 5):
        runs = {f"fedlandscape lanczos tol {tol:g}": (lambda tol=tol: run_ours(problem, k, tol)) for tol in (1e-2, 1e-3)}
        runs |= {f"pyhessian power iter tol {tol:g}": (lambda tol=tol: run_pyhessian(problem, k, tol)) for tol in (1e-3, 1e-4)}
        if eigenthings:
            runs |= {f"eigenthings lanczos max_iter={m or 'default'}": (lambda m=m: run_eigenthings(problem, k, m)) for m in (None, 60)}
        results = best_of(runs, repeats)
        rows = [(name, *out) for name, out in results.items()]
        for i, (name, values, *rest) in enumerate(rows):
            if name.startswith("eigenthings") and k == 5:
                rows[i] = (name + " [" + ", ".join(f"{v:.4f}" for v in values) + "]", values, *rest)
        pyhessian_rows = [r for r in rows if r[0].startswith("pyhessian")]
        errors = {row[0]: relative_error(row[1], problem.ref) for row in rows}
        # Speed-ups are against PyHessian's fastest run within 1e-3 of the reference (its tightest run if none is).
        accurate = [r for r in pyhessian_rows if errors[r[0]] <= ACCURATE]
        baseline = min(r[3] for r in (accurate or pyhessian_rows[-1:]))
        for name, _, hvps, seconds, flag in rows:
            flag_text = "" if flag is None else f" (flagged converged: {flag})"
            emit(lines, f"{k:>2} {name:<34} {seconds:8.2f} {hvps:5d} {errors[name]:11.2e} {baseline / seconds:21.1f}x{flag_text}")
        ours = [r for r in rows if r[0].startswith("fedlandscape") and errors[r[0]] <= ACCURATE]
        fastest = min(ours, key=lambda r: r[3]) if ours else None
        verdict = (f"{baseline / fastest[3]:.1f}x" if fastest else "n/a (no run of ours within 1e-3)")
        pyhessian_note = "" if accurate else " (no PyHessian run within 1e-3: against its tightest)"
        goal = f" (goal >= {GOAL_SPEEDUP:g}x)" if k == 5 else ""
        emit(lines, f"=> top-{k} at <= {ACCURATE:g} relative error: fedlandscape vs PyHessian {verdict}{goal}{pyhessian_note}")
    costs = product_costs(problem)
    how = "cached first-order graph: one backward pass" if costs["cached"] else "forward-over-reverse"
    emit(lines, f"one batch: gradient {costs['gradient'] * 1e3:.1f} ms; HVP fwd-rev {costs['fwd-rev'] * 1e3:.1f} ms "
                f"({costs['fwd-rev'] / costs['gradient']:.2f}x), double backward {costs['double-backward'] * 1e3:.1f} ms "
                f"({costs['double-backward'] / costs['gradient']:.2f}x)")
    ratio = costs["operator matvec"] / costs["full gradient"]
    emit(lines, f"=> all {len(problem.labels)} samples: one operator product ({how}) {costs['operator matvec'] * 1e3:.1f} ms / "
                f"one gradient {costs['full gradient'] * 1e3:.1f} ms = {ratio:.2f} (goal <= {GOAL_HVP_RATIO:g})")


class Float32ReductionsBasis(LanczosBasis):
    """Measurement only: a Lanczos basis ``Q`` and products ``W`` stored in float32, every reduction in float64.

    Dot products, norms and the projections ``Q^T v`` are accumulated in float64 (``Q`` upcast in
    row chunks, never whole); the updates ``v - Q c`` are float32. Same recurrence, restarts and
    random draws as :class:`~landscape.hessian.krylov.LanczosBasis` (whose ``T`` and Ritz values it
    keeps); the locked vectors stay float64 (``top_eigenpairs`` keeps them).
    """

    CHUNK = 1 << 16

    def __init__(self, operator, start, capacity, generator, *, locked=None, store_products=True) -> None:
        dim, self.operator, self.device, self.generator = operator.dim, operator, operator.device, generator
        self.locked = locked if locked is not None else torch.zeros(dim, 0, dtype=torch.float64, device=self.device)
        self.capacity = capacity
        self.q = torch.zeros(dim, capacity, dtype=torch.float32, device=self.device)
        self.w = torch.zeros(dim, capacity, dtype=torch.float32, device=self.device) if store_products else None
        self.alphas, self.betas, self.size, self.num_matvecs = [], [], 0, 0
        start = self.orthogonalize(start.to(device=self.device, dtype=torch.float32), self.q[:, :0])
        self.q[:, 0] = start / self.norm(start)

    def _rows(self) -> range:
        return range(0, self.q.shape[0], self.CHUNK)

    def project(self, basis: Tensor, vector: Tensor) -> Tensor:
        """``basis^T vector`` accumulated in float64."""
        out = torch.zeros(basis.shape[1], dtype=torch.float64, device=self.device)
        for i in self._rows():
            out += basis[i : i + self.CHUNK].double().T @ vector[i : i + self.CHUNK].double()
        return out

    def norm(self, vector: Tensor) -> Tensor:
        return self.project(vector[:, None], vector)[0].sqrt()

    def orthogonalize(self, vector: Tensor, columns: Tensor) -> Tensor:
        """``vector`` (float32) without its components along the locked vectors and ``columns``, twice."""
        for _ in range(2):
            for basis in (self.locked, columns):
                if basis.shape[1]:
                    vector = vector - (basis @ self.project(basis, vector).to(basis.dtype)).float()
        return vector

    def step(self) -> None:
        j = self.size
        q = self.q[:, j]
        product = self.operator.matvec(q.double())
        self.num_matvecs += 1
        if self.w is not None:
            self.w[:, j] = product.float()
        alpha = float(self.project(q[:, None], product)[0])
        residual = self.orthogonalize(product.float(), self.q[:, : j + 1])
        beta = float(self.norm(residual))
        self.alphas.append(alpha)
        self.size += 1
        if self.full:
            self.betas.append(beta)
            return
        if beta <= 1e-10 * (max(abs(a) for a in self.alphas) or 1.0):  # breakdown: a random restart, as the engine
            self.betas.append(0.0)
            if self.operator.dim - self.locked.shape[1] - self.size <= 0:
                self.capacity = self.size
                return
            drawn = torch.randn(self.operator.dim, generator=self.generator, dtype=torch.float64).to(self.device)
            residual = self.orthogonalize(drawn.float(), self.q[:, : self.size])
            residual = residual / self.norm(residual)
        else:
            self.betas.append(beta)
            residual = residual / beta
        self.q[:, j + 1] = residual

    def ritz_vectors(self, coefficients: Tensor) -> Tensor:
        c = coefficients.to(self.device)
        return torch.cat([self.q[i : i + self.CHUNK, : self.size].double() @ c for i in self._rows()])

    def true_residuals(self, values: Tensor, coefficients: Tensor) -> Tensor:
        c, values = coefficients.to(self.device), values.to(self.device)
        squares = torch.zeros(c.shape[1], dtype=torch.float64, device=self.device)
        for i in self._rows():
            rows = slice(i, i + self.CHUNK)
            diff = self.w[rows, : self.size].double() @ c - (self.q[rows, : self.size].double() @ c) * values
            squares += (diff**2).sum(dim=0)
        return squares.sqrt().cpu()


@contextlib.contextmanager
def krylov_basis(cls):
    """Run the eigensolver with another basis class (for the precision measurement only)."""
    saved = lanczos_module.LanczosBasis
    lanczos_module.LanczosBasis = cls
    try:
        yield
    finally:
        lanczos_module.LanczosBasis = saved


def bench_precision(problem: Problem, lines: list[str], tols: tuple[float, ...] = (1e-3, 1e-5)) -> None:
    emit(lines, f"{'basis':<40} {'tol':>6} {'seconds':>8} {'HVPs':>5} {'max rel err':>11} {'max|VtV-I|':>10} {'converged':>9}")
    for tol in tols:
        for name, cls in (("float64 (the engine)", LanczosBasis), ("float32, float64 reductions", Float32ReductionsBasis)):
            with krylov_basis(cls):
                pairs, seconds = timed(lambda: top_eigenpairs(problem.operator(), 5, tol=tol,
                                                              generator=torch.Generator().manual_seed(problem.seed)), problem.device)
            vectors = pairs.vectors.double()
            gram = (vectors.T @ vectors - torch.eye(vectors.shape[1], dtype=torch.float64, device=vectors.device)).abs().max()
            emit(lines, f"{name:<40} {tol:6.0e} {seconds:8.2f} {pairs.num_matvecs:5d} {relative_error(pairs.values, problem.ref):11.2e} "
                        f"{float(gram):10.1e} {str(all(pairs.converged)):>9}")
    operator = problem.operator()
    vector = torch.randn(operator.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(problem.device)
    product = median_time(lambda: operator.matvec(vector), problem.device, repeats=3)
    basis64 = torch.linalg.qr(torch.randn(operator.dim, 50, generator=torch.Generator().manual_seed(3), dtype=torch.float64))[0].to(problem.device)
    variant = Float32ReductionsBasis(operator, vector, 1, torch.Generator())
    basis32 = basis64.float()
    t64 = median_time(lambda: orthogonalize(vector, basis64), problem.device)
    t32 = median_time(lambda: variant.orthogonalize(vector.float(), basis32), problem.device)
    emit(lines, f"basis work of one step at 50 columns (twice-orthogonalised): float64 {t64 * 1e3:.1f} ms, float32 with float64 "
                f"reductions {t32 * 1e3:.1f} ms; one product {product * 1e3:.1f} ms")


def bench_trace(lines: list[str], seeds: int, device: torch.device) -> None:
    model = build_model("mlp", input_shape=(1, 16, 16), num_classes=10, hidden=(8,), seed=0).double()
    inputs, labels = evaluation_tensors(load_dataset("synthetic"), "train", 600, 0)
    batches = split_batches(inputs.double(), labels, 300)
    exact = float(torch.trace(dense_hessian(model, cross_entropy, batches)))
    operator = HessianOperator(model, cross_entropy, batches, device=device)
    emit(lines, f"\n## trace, MLP 256-8-10 on synthetic (600 samples, {operator.dim:,} parameters), exact trace {exact:.4f}")
    emit(lines, f"mean |relative error| over {seeds} seeds at equal product budgets")
    emit(lines, f"{'HVPs':>5} {'hutchinson':>11} {'hutch++':>9}")
    for budget in (15, 30, 60, 120):
        errors = {}
        for name, estimator in (("hutchinson", trace_hutchinson), ("hutch++", trace_hutchpp)):
            errors[name] = sum(abs(estimator(operator, budget, generator=torch.Generator().manual_seed(s)).estimate - exact)
                               for s in range(seeds)) / seeds / abs(exact)
        emit(lines, f"{budget:5d} {errors['hutchinson']:11.2e} {errors['hutch++']:9.2e}")


def _interpreter() -> str:
    """The interpreter as typed from the repository root (``.venv/bin/python``), or its name."""
    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else Path(sys.executable).name


def _load() -> str:
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dataset", choices=["fashion-mnist", "cifar10"], default="fashion-mnist")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the dataset is (CIFAR-10: see bench/cifar_shaped.py)")
    parser.add_argument("--samples", type=int, nargs="+", default=[256, 2048], help="data subset sizes")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per product pass, both engines")
    parser.add_argument("--train-steps", type=int, default=None, help="seeded SGD steps (CPU) before the analysis "
                        "(default 300 on fashion-mnist, 30 on cifar10)")
    parser.add_argument("--lr", type=float, default=None, help="their learning rate (default 0.05 on fashion-mnist, 0.01 on cifar10)")
    parser.add_argument("--sections", nargs="+", choices=["eigen", "precision", "trace"], default=["eigen", "trace"])
    parser.add_argument("--eigenthings", action=argparse.BooleanOptionalAction, default=True, help="include hessian-eigenthings rows")
    parser.add_argument("--repeats", type=int, default=1, help="eigen section: best time of this many interleaved rounds")
    parser.add_argument("--trace-seeds", type=int, default=20, help="seeds per trace budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/hessian-<cpu|cuda>.txt")
    args = parser.parse_args()
    device = resolve_device(args.device)
    out = args.out or Path(__file__).parent / "results" / f"hessian-{device.type}.txt"
    record = device_record(device)
    lines = [f"# {shlex.join([_interpreter(), *sys.argv])}",
             f"# device {record['device']} ({record['name']}), torch {record['torch']}, CUDA {record['cuda']}, "
             f"{torch.get_num_threads()} CPU threads; full float32 products (no TF32, no autocast); {_load()} at the start"]
    dataset = load_dataset(args.dataset, args.data_dir)
    steps, lr = TRAINING[args.dataset]
    steps, lr = args.train_steps if args.train_steps is not None else steps, args.lr if args.lr is not None else lr
    (model, loss), seconds = timed(lambda: train_cnn(dataset, steps, args.seed, lr))
    lines.append(f"CNN trained {steps} SGD steps (lr {lr:g}, momentum 0.9, batch 64) on the CPU in {seconds:.0f} s, "
                 f"loss of the last 10 {loss:.3f} ({args.dataset}, input {tuple(dataset.input_shape)})")
    print("\n".join(lines), flush=True)
    for num_examples in args.samples if {"eigen", "precision"} & set(args.sections) else ():
        problem = Problem(model, dataset, num_examples, args.batch_size, args.seed, device)
        emit(lines, f"\n## paper CNN, {args.dataset} train subset of {problem.describe()}, on {device}")
        emit(lines, problem.reference_line())
        if "eigen" in args.sections:
            bench_eigen(problem, lines, args.eigenthings, args.repeats)
        if "precision" in args.sections:
            emit(lines, "precision of the Krylov basis (top-5; float32 products in both):")
            bench_precision(problem, lines)
        del problem
    if "trace" in args.sections:
        bench_trace(lines, args.trace_seeds, device)
    emit(lines, f"\n# {_load()} at the end (other jobs on the machine slow every timing alike; errors are unaffected)")
    atomic_write_text(out, "\n".join(lines) + "\n")
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
