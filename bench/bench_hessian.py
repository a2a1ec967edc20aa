"""Benchmark: fedlandscape's Hessian engine vs PyHessian 0.1 and hessian-eigenthings 1.0.0a5, in one process.

Same model (the paper's CNN on Fashion-MNIST, briefly trained with seeded SGD so the spectrum has
its outliers), same data subset, same seed. For top-1 and top-5 it prints wall time, products and
the relative error against a tightly converged reference (our Lanczos at tol 1e-8, verified); the
cost of one HVP relative to one gradient; and, on a small MLP with an exact dense Hessian, the
trace error of Hutchinson vs Hutch++ at equal product budgets. Not a test: a fast but wrong
result shows up in the error column.

    .venv/bin/python bench/bench_hessian.py                      # 256 and 2048 samples (tens of minutes on 2 cores)
    .venv/bin/python bench/bench_hessian.py --samples 256 --train-steps 100   # a few minutes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

import torch

from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.io import atomic_write_text
from fedtrain.models import build_model
from landscape.hessian.exact import dense_hessian
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.lanczos import top_eigenpairs
from landscape.hessian.operator import HessianOperator, split_batches
from landscape.hessian.peers import counting_hvps, eigenthings_operator
from landscape.hessian.trace import trace_hutchinson, trace_hutchpp


def emit(lines: list[str], line: str) -> None:
    """Record a result line and print it at once (long runs show progress)."""
    lines.append(line)
    print(line, flush=True)


def train_cnn(dataset, steps: int, seed: int) -> torch.nn.Module:
    """The paper's CNN after ``steps`` seeded SGD steps (batch 64, lr 0.05, momentum 0.9)."""
    model = build_model("cnn", input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=seed)
    images, labels = dataset.split("train")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (64,), generator=generator)
        loss = cross_entropy(model(dataset.normalize(images[idx])), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def relative_error(values, reference) -> float:
    values = torch.as_tensor(values, dtype=torch.float64)
    reference = torch.as_tensor(reference[: len(values)], dtype=torch.float64)
    return float(((values - reference).abs() / reference.abs()).max())


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_pyhessian(model, inputs, labels, k, seed, tol=1e-3):
    import copy
    import importlib
    import warnings

    ph = importlib.import_module("pyhessian.hessian")  # the module (the package rebinds the name to the class)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        start = time.perf_counter()
        if len(labels) <= 256:
            engine = ph.hessian(copy.deepcopy(model), torch.nn.CrossEntropyLoss(), data=(inputs, labels), cuda=False)
        else:  # PyHessian's full-dataset mode: a DataLoader of batches of 256, as its README does for large sets
            loader = [(inputs[i : i + 256], labels[i : i + 256]) for i in range(0, len(labels), 256)]
            engine = ph.hessian(copy.deepcopy(model), torch.nn.CrossEntropyLoss(), dataloader=loader, cuda=False)
        full_products = [0]
        if len(labels) > 256:  # one dataloader_hv_product per vector (it calls hessian_vector_product per batch)
            per_dataset = engine.dataloader_hv_product

            def counted(v):
                full_products[0] += 1
                return per_dataset(v)

            engine.dataloader_hv_product = counted
        with counting_hvps(ph, "hessian_vector_product") as counter:
            values, _ = engine.eigenvalues(maxIter=200, tol=tol, top_n=k)
        seconds = time.perf_counter() - start
    return sorted((float(v) for v in values), reverse=True), full_products[0] or counter[0], seconds


def run_eigenthings(model, inputs, labels, k, seed, max_iter=None):
    import hessian_eigenthings as he

    operator = eigenthings_operator(model, inputs, labels, batch_size=len(labels))
    start = time.perf_counter()
    result = he.lanczos(operator, k=k, max_iter=max_iter, tol=1e-3, which="LA", seed=seed)
    seconds = time.perf_counter() - start
    order = torch.argsort(result.eigenvalues, descending=True)
    steps = max_iter if max_iter is not None else min(2 * k, operator.size - 1)
    return result.eigenvalues[order].double().tolist(), steps, seconds, result.converged[order].tolist()


def hvp_vs_gradient(operator: HessianOperator, repeats: int = 5) -> tuple[float, float, float]:
    """Median seconds of one gradient, one fwd-rev HVP and one double-backward HVP on the operator's data."""
    from torch.func import functional_call, grad

    from landscape.hessian.hvp import make_hvp

    batch = operator.batches[0]
    params = operator.params
    tangent = operator.unflatten(torch.randn(operator.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    gradient = grad(lambda p: cross_entropy(functional_call(operator.model, p, (batch[0],)), batch[1]))
    fwd_rev = make_hvp(operator.model, cross_entropy, method="fwd-rev")
    double_backward = make_hvp(operator.model, cross_entropy, method="double-backward")

    def median_time(fn):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            _, seconds = timed(fn)
            times.append(seconds)
        return sorted(times)[len(times) // 2]

    return (median_time(lambda: gradient(params)), median_time(lambda: fwd_rev(params, batch, tangent)),
            median_time(lambda: double_backward(params, batch, tangent)))


def bench_eigen(model, dataset, num_examples: int, seed: int, lines: list[str]) -> None:
    inputs, labels = evaluation_tensors(dataset, "train", num_examples, seed)
    operator = HessianOperator(model, cross_entropy, split_batches(inputs, labels, 256))
    # The reference is computed in float64 (float32 products cannot resolve residuals below ~1e-6).
    exact_operator = HessianOperator(model, cross_entropy, split_batches(inputs, labels, 256), dtype=torch.float64)
    reference = top_eigenpairs(exact_operator, 5, tol=1e-9, max_matvecs=400, generator=torch.Generator().manual_seed(seed + 99))
    ref = reference.values.tolist()
    emit(lines, f"\n## paper CNN, Fashion-MNIST train subset of {num_examples} (batches of 256), {operator.dim:,} parameters")
    emit(lines, f"reference (our Lanczos in float64, tol 1e-9, {reference.num_matvecs} HVPs, converged {all(reference.converged)}, "
                 f"verified {reference.verified}): " + ", ".join(f"{v:.5f}" for v in ref))
    emit(lines, f"{'k':>2} {'engine':<34} {'seconds':>8} {'HVPs':>5} {'max rel err':>11} {'speed-up vs pyhessian at <=1e-3':>22}")
    for k in (1, 5):
        rows = []
        for tol in (1e-2, 1e-3):
            ours, ours_s = timed(lambda: top_eigenpairs(operator, k, tol=tol, generator=torch.Generator().manual_seed(seed)))
            rows.append((f"fedlandscape lanczos tol {tol:g}", ours_s, ours.num_matvecs, relative_error(ours.values, ref),
                         all(ours.converged)))
        pyhessian_rows = []
        for tol in (1e-3, 1e-4):
            ph_values, ph_hvps, ph_s = run_pyhessian(model, inputs, labels, k, seed, tol)
            pyhessian_rows.append((f"pyhessian power iter tol {tol:g}", ph_s, ph_hvps, relative_error(ph_values, ref), None))
        rows += pyhessian_rows
        for max_iter in (None, 60):
            values, steps, seconds, flags = run_eigenthings(model, inputs, labels, k, seed, max_iter)
            rows.append((f"eigenthings lanczos max_iter={max_iter or 'default'}", seconds, steps, relative_error(values, ref), all(flags)))
            if k == 5:
                rows[-1] = (rows[-1][0] + " [" + ", ".join(f"{v:.4f}" for v in values) + "]",) + rows[-1][1:]
        # Speed-ups are against PyHessian's fastest run within 1e-3 of the reference (its tightest run if none is).
        accurate = [r for r in pyhessian_rows if r[3] <= 1e-3] or pyhessian_rows[-1:]
        baseline = min(r[1] for r in accurate)
        for name, seconds, hvps, error, flag in rows:
            flag_text = "" if flag is None else f" (flagged converged: {flag})"
            emit(lines, f"{k:>2} {name:<34} {seconds:8.2f} {hvps:5d} {error:11.2e} {baseline / seconds:21.1f}x{flag_text}")
    gradient_s, fwd_rev_s, double_backward_s = hvp_vs_gradient(operator)
    emit(lines, f"one gradient {gradient_s * 1e3:.0f} ms; one HVP fwd-rev {fwd_rev_s * 1e3:.0f} ms "
                 f"({fwd_rev_s / gradient_s:.2f}x gradient), double backward {double_backward_s * 1e3:.0f} ms "
                 f"({double_backward_s / gradient_s:.2f}x gradient)")


def bench_trace(lines: list[str], seeds: int) -> None:
    model = build_model("mlp", input_shape=(1, 16, 16), num_classes=10, hidden=(8,), seed=0).double()
    dataset = load_dataset("synthetic")
    inputs, labels = evaluation_tensors(dataset, "train", 600, 0)
    batches = split_batches(inputs.double(), labels, 300)
    exact = float(torch.trace(dense_hessian(model, cross_entropy, batches)))
    operator = HessianOperator(model, cross_entropy, batches)
    emit(lines, f"\n## trace, MLP 256-8-10 on synthetic (600 samples, {operator.dim:,} parameters), exact trace {exact:.4f}")
    emit(lines, f"mean |relative error| over {seeds} seeds at equal product budgets")
    emit(lines, f"{'HVPs':>5} {'hutchinson':>11} {'hutch++':>9}")
    for budget in (15, 30, 60, 120):
        errors = {}
        for name, estimator in (("hutchinson", trace_hutchinson), ("hutch++", trace_hutchpp)):
            errors[name] = sum(abs(estimator(operator, budget, generator=torch.Generator().manual_seed(s)).estimate - exact)
                               for s in range(seeds)) / seeds / abs(exact)
        emit(lines, f"{budget:5d} {errors['hutchinson']:11.2e} {errors['hutch++']:9.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[256, 2048], help="data subset sizes")
    parser.add_argument("--train-steps", type=int, default=300, help="seeded SGD steps before the analysis")
    parser.add_argument("--trace-seeds", type=int, default=20, help="seeds per trace budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "hessian.txt")
    args = parser.parse_args()
    lines = [f"# bench_hessian.py --samples {' '.join(map(str, args.samples))} --train-steps {args.train_steps} "
             f"--seed {args.seed}; torch {torch.__version__}, {torch.get_num_threads()} threads"]
    dataset = load_dataset("fashion-mnist")
    model, seconds = timed(lambda: train_cnn(dataset, args.train_steps, args.seed))
    lines.append(f"CNN trained {args.train_steps} SGD steps in {seconds:.0f} s")
    print("\n".join(lines), flush=True)
    for num_examples in args.samples:
        bench_eigen(model, dataset, num_examples, args.seed, lines)
    bench_trace(lines, args.trace_seeds)
    atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
