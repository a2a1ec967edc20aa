"""Hessian quantities over several disjoint seeded data subsets: the subsets, their seeds, progress and the mean +- stderr.

A Hessian measured on ``n`` samples is a random variable of the samples drawn: PyHessian's users saw
lambda_1 vary tenfold between batches (amirgholami/PyHessian issue #5). ``HessianSettings.subsets = K``
analyses ``K`` disjoint seeded subsets of ``n`` samples each and reports, for lambda_1..k and the trace,
the across-subset mean and its standard error ``s / sqrt(K)`` (``s``: the unbiased standard deviation of
the ``K`` per-subset values), next to the per-subset values.

Choices, stated once here:

* The subsets are consecutive blocks of one seeded permutation of the split (each block sorted), so they
  are disjoint, and the first block is exactly :func:`fedtrain.data.subset_indices`'s subset: subset 0 of
  ``K`` subsets is today's one-subset analysis, bit for bit.
* Subset 0 uses the settings' own estimator seeds; subset ``j > 0`` uses ``derive_seed(seed, "hessian-subset", j)``
  in their place, so the Lanczos starts and trace probes are independent between subsets and the
  across-subset standard error covers the estimator's noise as well as the data's.
* The density (SLQ) is computed on subset 0 only: the spread the claims need is that of lambda_1 and the
  trace, and the density costs ``probes x steps`` products, more than the rest together.

This module holds no numerics beyond the mean and standard error: :mod:`landscape.hessian.analysis`
runs one analysis per subset and assembles the report with :func:`combine_subsets`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fedtrain._seeds import derive_seed
from fedtrain.data import ImageDataset, subset_indices
from fedtrain.errors import ConfigError
from fedtrain.progress import Progress, ProgressCallback, report
from landscape.hessian.lanczos import flatness_ratio
from landscape.hessian.trace import mean_and_stderr
from landscape.settings import HessianSettings

__all__ = ["disjoint_subset_indices", "evaluation_subsets", "subset_settings", "SubsetProgress", "combine_subsets"]


def disjoint_subset_indices(num_total: int, num_examples: int | None, count: int, seed: int, *, split: str = "the split") -> list[Tensor]:
    """``count`` disjoint sorted index sets of ``num_examples`` each, from one seeded permutation of ``range(num_total)``.

    Subset ``j`` is ``sort(perm[j n : (j + 1) n])`` with ``perm = randperm(num_total, seed)``: the first is
    :func:`fedtrain.data.subset_indices` ``(num_total, num_examples, seed)`` itself. With ``count == 1`` that
    function's rule holds (``None`` or more than ``num_total``: all samples).

    Raises:
        ConfigError: ``count < 1``, or ``count > 1`` with ``num_examples`` ``None`` or ``count * num_examples > num_total``.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"subsets (--subsets) must be an integer >= 1, got {count!r}.")
    if count == 1:
        return [subset_indices(num_total, num_examples, seed)]
    if num_examples is None or count * num_examples > num_total:
        asked = "all samples" if num_examples is None else f"{count} x {num_examples:,} = {count * num_examples:,} samples"
        most = num_total // count
        raise ConfigError(f"{count} disjoint subsets (--subsets) of {asked} do not fit in {split} of {num_total:,} samples. "
                          f"Lower --subsets or pass --samples of at most {most:,} (= {num_total:,} // {count}).")
    order = torch.randperm(num_total, generator=torch.Generator().manual_seed(seed))
    return [order[j * num_examples:(j + 1) * num_examples].sort().values for j in range(count)]


def evaluation_subsets(dataset: ImageDataset, split: str, num_examples: int | None, count: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """:func:`fedtrain.data.evaluation_tensors` of each of :func:`disjoint_subset_indices`' subsets.

    Normalised float32 inputs and labels, never augmented, each subset sorted by index, on the dataset's
    device. With ``count == 1`` the one pair equals ``evaluation_tensors(dataset, split, num_examples, seed)``.

    Raises:
        ConfigError: the subsets do not fit in the split (see :func:`disjoint_subset_indices`).
    """
    images, labels = dataset.split(split)
    subsets = disjoint_subset_indices(labels.numel(), num_examples, count, seed, split=f"the {dataset.name} {split} split")
    out = []
    for indices in subsets:
        indices = indices.to(images.device)
        out.append((dataset.normalize(images[indices]), labels[indices]))
    return out


def subset_settings(settings: HessianSettings, index: int) -> HessianSettings:
    """The one-subset settings subset ``index`` is analysed with.

    Subset 0: ``settings`` with ``subsets = 1`` (its own seeds, its density). Subset ``j > 0``: estimator seed
    ``derive_seed(settings.seed, "hessian-subset", j)`` and no density (see the module docstring).
    """
    if index == 0:
        return dataclasses.replace(settings, subsets=1)
    return dataclasses.replace(settings, subsets=1, seed=derive_seed(settings.seed, "hessian-subset", index), density=False)


class SubsetProgress:
    """One ``"hessian"`` stage over all subsets, from the per-subset analyses' events.

    Subset ``j``'s events count from the products of the finished subsets; its total adds the planned
    products of the subsets still to run (``planned[j + 1:]``), so the stage ends once, after the last subset.

    Args:
        progress: the caller's callback (``None``: nobody listens).
        planned: products planned for each subset, in order.
    """

    def __init__(self, progress: ProgressCallback | None, planned: Sequence[int]) -> None:
        self.progress = progress
        self.planned = list(planned)
        self.finished = 0  # products of the subsets already done

    def for_subset(self, index: int) -> ProgressCallback | None:
        """The callback the analysis of subset ``index`` reports to (``None`` when nobody listens)."""
        if self.progress is None:
            return None

        def forward(event: Progress) -> None:
            later = sum(self.planned[index + 1:])
            detail = f"subset {index + 1}/{len(self.planned)}" + (f", {event.detail}" if event.detail else "")
            report(self.progress, dataclasses.replace(event, done=self.finished + event.done,
                                                      total=self.finished + event.total + later, detail=detail))
            if event.finished:
                self.finished += event.total
        return forward


def _stderr_of_mean(stderrs: Sequence[float | None]) -> float | None:
    # the mean of K independent estimates has variance sum(se_j^2) / K^2
    if any(s is None or not math.isfinite(s) for s in stderrs):
        return None
    return math.sqrt(math.fsum(s * s for s in stderrs)) / len(stderrs)  # type: ignore[operator]


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def combine_subsets(reports: Sequence[dict[str, Any]], seeds: Sequence[int], num_examples: int) -> dict[str, Any]:
    """The fields of the report over ``K = len(reports)`` subsets, from each subset's ``HessianReport.to_dict()``.

    Returns a dict with the report's keys, meaning what they mean for one subset, over the ``K`` subsets:

    * ``eigenvalues``: the across-subset mean of each of lambda_1..k; ``eigenvalues_stderr``: its standard
      error ``s / sqrt(K)`` (:func:`~landscape.hessian.trace.mean_and_stderr`);
    * ``residuals``: per pair the largest residual over the subsets; ``converged``/``verified``: every subset;
    * ``trace``: ``estimate`` the mean of the per-subset estimates, ``stderr`` the estimator's standard error
      of that mean ``sqrt(sum se_j^2) / K``, ``subset_stderr`` the across-subset ``s / sqrt(K)`` (data and
      estimator noise together), ``num_matvecs`` the products over all subsets;
    * ``density``: subset 0's; ``hvps``/``seconds``: summed over the subsets (``seconds`` without ``total``);
    * ``subsets``: ``count``, ``num_examples``, the estimator ``seeds``, and per subset ``eigenvalues``,
      ``converged``, ``traces``, ``trace_stderrs``, ``hvps`` and ``seconds``; ``density_from``: ``0``; ``ratios``,
      each subset's lambda_1 / lambda_k, and ``ratio_stderr``, their ``s / sqrt(K)`` (the error of the report's
      ``ratio``, the ratio of the mean eigenvalues, to first order).

    Raises:
        ConfigError: fewer than two subsets, or subsets with different numbers of eigenvalues.
    """
    count = len(reports)
    if count < 2:
        raise ConfigError(f"combine_subsets needs at least two subsets, got {count}.")
    widths = {len(r["eigenvalues"]) for r in reports}
    if len(widths) != 1:
        raise ConfigError(f"The subsets' analyses found different numbers of eigenvalues ({sorted(widths)}); rerun with a smaller --top-k.")
    columns = list(zip(*(r["eigenvalues"] for r in reports)))
    means, stderrs = zip(*(_mean_stderr_or_none(column) for column in columns)) if columns else ((), ())
    residuals = [None if any(r is None for r in column) else max(column) for column in zip(*(r["residuals"] for r in reports))]
    converged = [None if any(c is None for c in column) else all(column) for column in zip(*(r["converged"] for r in reports))]
    verified = [r.get("multiplicity_verified") for r in reports]
    trace = None
    if reports[0]["trace"] is not None:
        estimates = [r["trace"]["estimate"] for r in reports]
        mean, spread = mean_and_stderr(estimates)
        trace = {**reports[0]["trace"], "estimate": mean, "stderr": _stderr_of_mean([r["trace"]["stderr"] for r in reports]),
                 "num_matvecs": sum(r["trace"]["num_matvecs"] for r in reports), "subset_stderr": _finite_or_none(spread),
                 "subsets": count}
    ratios = [flatness_ratio(r["eigenvalues"]) if None not in r["eigenvalues"] else None for r in reports]
    hvps = {key: sum(r["hvps"].get(key, 0) for r in reports) for key in reports[0]["hvps"]}
    seconds = {key: math.fsum(r["seconds"].get(key, 0.0) for r in reports) for key in reports[0]["seconds"] if key != "total"}
    return {
        "eigenvalues": list(means),
        "eigenvalues_stderr": list(stderrs),
        "residuals": residuals,
        "converged": converged,
        "verified": None if any(v is None for v in verified) else all(verified),
        "trace": trace,
        "density": reports[0]["density"],
        "hvps": hvps,
        "seconds": seconds,
        "subsets": {
            "count": count, "num_examples": num_examples, "seeds": list(seeds), "density_from": 0,
            "eigenvalues": [r["eigenvalues"] for r in reports],
            "ratios": ratios, "ratio_stderr": _mean_stderr_or_none(ratios)[1],
            "converged": [r["converged"] for r in reports],
            "traces": None if trace is None else [r["trace"]["estimate"] for r in reports],
            "trace_stderrs": None if trace is None else [r["trace"]["stderr"] for r in reports],
            "hvps": [r["hvps"] for r in reports],
            "seconds": [r["seconds"] for r in reports],
        },
    }


def _mean_stderr_or_none(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    if any(v is None for v in values):
        return None, None
    mean, stderr = mean_and_stderr(values)  # type: ignore[arg-type]
    return mean, _finite_or_none(stderr)
