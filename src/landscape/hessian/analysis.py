"""The Hessian analysis of a model or a checkpoint: top eigenpairs, trace and density, in one report.

This is the library entry point of ``landscape hessian``: :func:`analyze_checkpoint` reads model
and data spec from a checkpoint and, with a :class:`~landscape.settings.HessianSettings`, returns a
:class:`HessianReport` whose ``to_dict()`` is the command's JSON (its ``config``: the settings and
the facts of the run). :func:`hessian_eigenvectors` serves loss-surface directions.

The settings' ``device`` spec is resolved here, once per call (:func:`fedtrain.device.resolve_device`);
the data subset is moved there once, and the operator's model copy, vectors and bases live there.
What leaves the analysis is on the host: numbers, and eigenvectors as CPU tensors.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fedtrain.checkpoint import file_sha256, library_versions
from fedtrain.data import evaluation_tensors
from fedtrain.device import device_record, resolve_device, synchronize, to_cpu
from fedtrain.errors import ConfigError
from fedtrain.foreign import ForeignCheckpoint, ForeignSpec, dataset_of, open_checkpoint
from fedtrain.io import atomic_write_bytes, json_roundtrip
from fedtrain.progress import ProgressCallback
from landscape.hessian.counted import ProductPlan
from landscape.hessian.density import density_slq
from landscape.hessian.lanczos import default_max_matvecs, flatness_ratio, top_eigenpairs
from landscape.hessian.hvp import Batch
from landscape.hessian.operator import HessianOperator, LinearOperator, split_batches
from landscape.hessian.trace import trace_hutchinson, trace_hutchpp
from landscape.hessian.measures import flatness_measures
from landscape.hessian.subsets import SubsetProgress, combine_subsets, disjoint_subset_indices, evaluation_subsets, subset_settings
from landscape.settings import HessianSettings, MeasureSettings

__all__ = ["cross_entropy", "hessian_eigenvectors", "HessianReport", "analyze_model", "analyze_checkpoint", "planned_products",
           "read_report"]

# Builds the operator of an analysis from the model, its batches and the device.
OperatorFactory = Callable[[nn.Module, list[Batch], torch.device], LinearOperator]
# Shown with the cost estimate of a long analysis: the settings that cut its products or their cost.
SHORTER = ("Shorter: fewer --samples (each product is one pass over them), --density-probes/--density-steps "
           "or --no-density, fewer --trace-matvecs or --no-trace, a smaller --top-k.")

def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy, the training loss of every model in this toolkit."""
    return torch.nn.functional.cross_entropy(outputs, targets)


def hessian_eigenvectors(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    top_k: int = 2,
    batch_size: int = 256,
    tol: float = 1e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[list[float], list[dict[str, Tensor]]]:
    """Top-``k`` eigenvalues (descending) and eigenvectors of the Hessian of the mean cross-entropy.

    The Hessian is that of the mean loss over all of ``(inputs, labels)`` (split into batches of
    ``batch_size`` only to bound memory), with BatchNorm/dropout in eval mode. The model is not
    modified (nor moved: a private copy goes to ``device``). Eigenvectors have unit norm over all
    parameters and are returned as dicts keyed by parameter name, with the parameters' shapes and
    dtype, on ``device`` (e.g. loss-surface directions).

    Args:
        model: the network.
        inputs: model inputs (normalised, never augmented).
        labels: class labels.
        top_k: number of eigenpairs.
        batch_size: samples per Hessian-vector product pass.
        tol: relative residual tolerance of :func:`~landscape.hessian.lanczos.top_eigenpairs`.
        seed: seed of the Lanczos start vectors (a CPU generator on every device).
        device: where to compute: a ``torch.device`` or a spec (``auto``, ``cpu``, ``cuda``, ``cuda:N``);
            default the model's device.

    Returns:
        ``(eigenvalues, eigenvectors)``.

    Raises:
        ConfigError: a device spec this machine does not have.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    elif isinstance(device, str):
        device = resolve_device(device)
    inputs, labels = inputs.to(device), labels.to(device)
    operator = HessianOperator(model, cross_entropy, split_batches(inputs, labels, batch_size), device=device)
    pairs = top_eigenpairs(operator, top_k, tol=tol, generator=torch.Generator().manual_seed(seed))
    vectors = [operator.unflatten(pairs.vectors[:, i]) for i in range(pairs.vectors.shape[1])]
    return [float(v) for v in pairs.values], vectors


@dataclass
class HessianReport:
    """The result of a Hessian analysis, plain values only (``to_dict()`` is the CLI's JSON).

    Attributes:
        eigenvalues: top-k eigenvalues, descending.
        residuals: true residuals ``||H v - lambda v||`` (``None`` entries where the backend gives none).
        converged: per pair, ``residual <= tol |lambda|``.
        trace: ``{"estimate", "stderr", "method", "num_matvecs"}`` or ``None``.
        density: ``{"nodes", "weights", "grid", "values", "bandwidth", "num_matvecs"}`` or ``None``.
        hvps: Hessian-vector products used, per quantity and in total.
        seconds: wall time, per quantity and in total.
        config: everything needed to rerun: checkpoint, weights, data, seeds, budgets, versions, the
            device spec (``device``) and where it ran (``device_used``, :func:`fedtrain.device.device_record`).
        errors: per quantity, why a backend could not compute it.
        verified: whether the multiplicity check of the eigensolver completed.
        eigenvectors: the eigenvectors as ``{parameter name: CPU tensor}`` dicts, when they were kept
            (not part of ``to_dict()``).
        eigenvalues_stderr, subsets: over ``settings.subsets > 1`` disjoint subsets, the standard error of
            the mean eigenvalues and the per-subset values (:func:`landscape.hessian.subsets.combine_subsets`,
            which also says what the other fields then hold); ``None`` for one subset and absent from ``to_dict()``.
    """

    eigenvalues: list[float]
    residuals: list[float | None]
    converged: list[bool | None]
    trace: dict[str, Any] | None
    density: dict[str, Any] | None
    hvps: dict[str, int]
    seconds: dict[str, float]
    config: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    verified: bool | None = None
    eigenvectors: list[dict[str, Tensor]] | None = field(default=None, repr=False)
    measures: dict[str, Any] | None = None
    eigenvalues_stderr: list[float | None] | None = None
    subsets: dict[str, Any] | None = None

    @property
    def ratio(self) -> float | None:
        """:func:`~landscape.hessian.lanczos.flatness_ratio` of the eigenvalues."""
        return flatness_ratio(self.eigenvalues)

    def to_dict(self) -> dict[str, Any]:
        return {
            "eigenvalues": self.eigenvalues,
            "ratio": self.ratio,
            "residuals": self.residuals,
            "converged": self.converged,
            "multiplicity_verified": self.verified,
            "trace": self.trace,
            "density": self.density,
            "hvps": self.hvps,
            "seconds": self.seconds,
            "config": self.config,
            "errors": self.errors,
            **({"measures": self.measures} if self.measures is not None else {}),
            **({"eigenvalues_stderr": self.eigenvalues_stderr} if self.eigenvalues_stderr is not None else {}),
            **({"subsets": self.subsets} if self.subsets is not None else {}),
        }


def analyze_model(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    settings: HessianSettings = HessianSettings(),
    *,
    keep_eigenvectors: bool = False,
    progress: ProgressCallback | None = None,
    measures: MeasureSettings | None = None,
) -> HessianReport:
    """Top-k eigenpairs, trace and SLQ density of the mean cross-entropy Hessian on ``(inputs, labels)``.

    The analysis settings are ``settings`` (its ``split``, ``num_examples`` and ``weights`` choose the
    data and model of a checkpoint and are not used here: the data are all of ``(inputs, labels)``).
    ``settings.device`` is resolved once; the model (a private copy) and the data are moved there.
    Seeds, one generator per component: Lanczos ``seed``, trace ``seed + 1``, density ``seed + 2``.
    Products per quantity: top-k as needed (at most ``max_matvecs``), trace ``trace_matvecs``,
    density ``density_probes * density_steps``; each product is one pass over all samples.

    Args:
        model: the network (not modified).
        inputs: model inputs (normalised, never augmented).
        labels: class labels.
        settings: eigensolver, trace and density settings, batch size, seed and backend.
        keep_eigenvectors: fill ``report.eigenvectors`` (``fedlandscape`` backend only).
        measures: also compute these flatness measures on the same operator
            (:func:`~landscape.hessian.measures.flatness_measures`, seed ``settings.seed``), as ``report.measures``
            (``to_dict()['measures']``, with their own products and seconds; not in ``hvps``/``seconds``).
        progress: called with a ``"hessian"`` :class:`~fedtrain.progress.Progress` in ``"products"`` before the
            first and after every Hessian-vector product (planned: :func:`planned_products`; the eigensolver's
            unused budget is dropped when it converges), ``fedlandscape`` backend only.

    With ``settings.subsets = K > 1`` the data are instead ``K`` disjoint seeded subsets of ``settings.num_examples``
    of ``(inputs, labels)`` (:func:`~landscape.hessian.subsets.disjoint_subset_indices` with ``settings.seed``), each
    analysed, and the report holds their mean and standard error (:func:`~landscape.hessian.subsets.combine_subsets`).

    Returns:
        :class:`HessianReport` (``config`` holds the analysis settings and ``num_examples = len(labels)``, or the
        subset size with ``subsets > 1``; no checkpoint fields).

    Raises:
        ConfigError: a device this machine does not have; ``subsets > 1`` with eigenvectors or measures, or
            subsets that do not fit in the data.
    """
    device = resolve_device(settings.device)
    _refuse_with_subsets(settings, keep_eigenvectors, measures)
    if settings.subsets > 1:
        subsets = disjoint_subset_indices(len(labels), settings.num_examples, settings.subsets, settings.seed, split="the data given")
        data = [(inputs[i.to(inputs.device)], labels[i.to(labels.device)]) for i in subsets]
        return _analyze_subsets(model, data, settings, device, progress=progress)
    return _analyze(model, inputs, labels, settings, device, keep_eigenvectors=keep_eigenvectors,
                    progress=progress, measures=measures)


def _refuse_with_subsets(settings: HessianSettings, keep_eigenvectors: bool, measures: MeasureSettings | None) -> None:
    if settings.subsets > 1 and (keep_eigenvectors or measures is not None):
        what = "eigenvectors (--eigenvectors-out, Hessian directions)" if keep_eigenvectors else "flatness measures (--measures)"
        raise ConfigError(f"{what} belong to one data subset's Hessian, but subsets (--subsets) is {settings.subsets}. "
                          "Ask for them with --subsets 1 (the subset of the first of the disjoint subsets, same --seed).")


def _analyze_subsets(model: nn.Module, data: list[tuple[Tensor, Tensor]], settings: HessianSettings, device: torch.device, *,
                     progress: ProgressCallback | None = None, operator_factory: OperatorFactory | None = None) -> HessianReport:
    """One :func:`_analyze` per ``(inputs, labels)`` subset (:func:`~landscape.hessian.subsets.subset_settings`), combined."""
    start = time.perf_counter()
    parts = [subset_settings(settings, index) for index in range(len(data))]
    counter = SubsetProgress(progress, [sum(planned_products(part).values()) for part in parts])
    reports = [_analyze(model, inputs, labels, part, device, keep_eigenvectors=False, progress=counter.for_subset(index),
                        operator_factory=operator_factory)
               for index, ((inputs, labels), part) in enumerate(zip(data, parts))]
    fields = combine_subsets([r.to_dict() for r in reports], [part.seed for part in parts], int(len(data[0][1])))
    fields["seconds"]["total"] = time.perf_counter() - start
    config = {**reports[0].config, "subsets": settings.subsets}
    return HessianReport(
        eigenvalues=fields["eigenvalues"], residuals=fields["residuals"], converged=fields["converged"], trace=fields["trace"],
        density=fields["density"], hvps=fields["hvps"], seconds=fields["seconds"], config=config, verified=fields["verified"],
        errors=reports[0].errors, eigenvalues_stderr=fields["eigenvalues_stderr"], subsets=fields["subsets"],
    )


def planned_products(settings: HessianSettings, dim: int | None = None) -> dict[str, int]:
    """The product budget of each quantity of an analysis, in the order they run.

    Eigenvalues: ``max_matvecs`` (default :func:`~landscape.hessian.lanczos.default_max_matvecs` of
    ``top_k``, capped at ``dim`` when known), an upper bound, usually not all used; trace: ``trace_matvecs``;
    density: ``density_probes * density_steps``. Each product is one pass over all samples.
    """
    top_k = settings.top_k if dim is None else min(settings.top_k, dim)
    plan = {"eigenvalues": default_max_matvecs(top_k) if settings.max_matvecs is None else settings.max_matvecs}
    if settings.trace:
        plan["trace"] = settings.trace_matvecs
    if settings.density:
        plan["density"] = settings.density_probes * settings.density_steps
    return plan


def _analyze(model: nn.Module, inputs: Tensor, labels: Tensor, settings: HessianSettings, device: torch.device, *,
             keep_eigenvectors: bool, progress: ProgressCallback | None = None,
             measures: MeasureSettings | None = None, operator_factory: OperatorFactory | None = None) -> HessianReport:
    """:func:`analyze_model` on a resolved ``device``; ``operator_factory`` (default :class:`HessianOperator`) builds the operator."""
    # the operator's dimension, known before any product: a request the model cannot answer is refused here
    settings.check_model_size(sum(p.numel() for p in model.parameters() if p.requires_grad))
    config = _analysis_config(settings, int(len(labels)), device)
    if measures is not None and settings.backend != "fedlandscape":
        raise ConfigError("Flatness measures (--measures) need the fedlandscape backend; PyHessian computes eigenvalues, trace and density only.")
    if settings.backend == "pyhessian":
        return _analyze_with_pyhessian(model, inputs, labels, settings, config, device)
    start_all = time.perf_counter()
    inputs, labels = inputs.to(device), labels.to(device)  # once: the batches are views of these
    batches = split_batches(inputs, labels, settings.batch_size)
    operator = (HessianOperator(model, cross_entropy, batches, device=device) if operator_factory is None
                else operator_factory(model, batches, device))
    config["hvp_method"] = operator.method
    config["hvp_cached_graph"] = operator.cache_graph
    config["num_parameters"] = operator.dim
    seeds = settings.seeds
    hvps: dict[str, int] = {}
    seconds: dict[str, float] = {}
    plan = ProductPlan(planned_products(settings, operator.dim), progress, SHORTER)
    start = time.perf_counter()
    pairs = top_eigenpairs(plan.counted(operator, "eigenvalues"), min(settings.top_k, operator.dim), tol=settings.tol, max_matvecs=settings.max_matvecs,
                           generator=torch.Generator().manual_seed(seeds["lanczos"]))
    synchronize(device)  # timings of queued device work
    hvps["eigenvalues"], seconds["eigenvalues"] = pairs.num_matvecs, time.perf_counter() - start
    plan.finish("eigenvalues", pairs.num_matvecs)
    trace_out = None
    if settings.trace:
        start = time.perf_counter()
        estimator = trace_hutchpp if settings.trace_method == "hutch++" else trace_hutchinson
        estimate = estimator(plan.counted(operator, "trace"), settings.trace_matvecs, generator=torch.Generator().manual_seed(seeds["trace"]))
        trace_out = estimate.to_dict()
        synchronize(device)
        hvps["trace"], seconds["trace"] = estimate.num_matvecs, time.perf_counter() - start
        plan.finish("trace", estimate.num_matvecs)
    density_out = None
    if settings.density:
        start = time.perf_counter()
        spectrum = density_slq(plan.counted(operator, "density"), num_probes=settings.density_probes, num_steps=settings.density_steps,
                               generator=torch.Generator().manual_seed(seeds["density"]))
        density_out = spectrum.to_dict()
        synchronize(device)
        hvps["density"], seconds["density"] = spectrum.num_matvecs, time.perf_counter() - start
        plan.finish("density", spectrum.num_matvecs)
    hvps["total"] = sum(hvps.values())
    seconds["total"] = time.perf_counter() - start_all
    report = HessianReport(
        eigenvalues=[float(v) for v in pairs.values],
        residuals=[float(r) for r in pairs.residuals],
        converged=list(pairs.converged),
        trace=trace_out,
        density=density_out,
        hvps=hvps,
        seconds=seconds,
        config=config,
        verified=pairs.verified,
    )
    if measures is not None:  # on the same operator: the same subset, model copy and batches
        report.measures = flatness_measures(operator, measures, seed=settings.seed)
    if keep_eigenvectors:
        report.eigenvectors = [to_cpu(operator.unflatten(pairs.vectors[:, i])) for i in range(pairs.vectors.shape[1])]
    return report


def _analysis_config(settings: HessianSettings, num_examples: int, device: torch.device) -> dict[str, Any]:
    """``report.config`` of :func:`analyze_model`: the settings that shape the numbers, and the run facts.

    ``split``, ``weights`` and ``seed`` describe a checkpoint's data and model (:func:`analyze_checkpoint`
    records them as ``split``, the weights used and ``subset_seed``); ``device`` is the spec asked for
    and ``device_used`` where it ran (:func:`fedtrain.device.device_record`); ``num_examples`` is the
    number of samples actually used. The other keys keep the order of the JSON files written before
    the device existed; the two device keys follow the budgets.
    """
    values = settings.to_dict()
    for name in ("split", "weights", "seed", "backend"):
        values.pop(name, None)
    return {
        "backend": settings.backend, **values, "device_used": json_roundtrip(device_record(device)),
        "num_examples": num_examples, "seeds": settings.seeds, "bn_mode": "eval", "loss": "cross-entropy (mean)",
        "versions": library_versions(),
    }


def _analyze_with_pyhessian(model: nn.Module, inputs: Tensor, labels: Tensor, settings: HessianSettings,
                            config: dict[str, Any], device: torch.device) -> HessianReport:
    from landscape.hessian.peers import pyhessian_analysis
    from landscape.hessian.density import default_bandwidth, smooth_density

    out = pyhessian_analysis(
        model, inputs, labels, top_k=settings.top_k, tol=settings.tol, trace=settings.trace,
        trace_max_iter=settings.trace_matvecs, density=settings.density, density_steps=settings.density_steps,
        density_probes=settings.density_probes, seed=settings.seeds["lanczos"], device=device,
    )
    density_out = out["density"]
    if density_out is not None:
        nodes, weights = torch.tensor(density_out["nodes"]), torch.tensor(density_out["weights"])
        bandwidth = default_bandwidth(nodes)
        grid, values = smooth_density(nodes, weights, bandwidth=bandwidth)
        density_out = {**density_out, "grid": grid, "values": values, "bandwidth": bandwidth}
    hvps = dict(out["hvps"])
    hvps["total"] = sum(hvps.values())
    seconds = dict(out["seconds"])
    seconds["total"] = sum(seconds.values())
    eigenvalues = out["eigenvalues"] or []
    return HessianReport(
        eigenvalues=eigenvalues, residuals=[None] * len(eigenvalues), converged=[None] * len(eigenvalues),
        trace=out["trace"], density=density_out, hvps=hvps, seconds=seconds, config=config, errors=out["errors"],
    )


def analyze_checkpoint(
    path: str | os.PathLike[str],
    settings: HessianSettings = HessianSettings(),
    *,
    data_dir: str | os.PathLike[str] | None = None,
    eigenvectors_out: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    measures: MeasureSettings | None = None,
    foreign: ForeignSpec | None = None,
    operator_factory: OperatorFactory | None = None,
) -> HessianReport:
    """Hessian analysis of a checkpoint's model on a fixed subset of its dataset.

    The model and dataset come from the checkpoint (the SWA model when it has one and
    ``settings.weights == "auto"``). The data are :func:`fedtrain.data.evaluation_tensors` of
    ``settings.split``: a seeded (``settings.seed``), sorted, never augmented subset of
    ``settings.num_examples`` samples (``None``: the whole split). Cost: one product = one pass over
    those samples; with the defaults (2,048 samples, top-5, Hutch++ with 60 products, 10 x 80 SLQ)
    the density dominates; for a quick run lower ``num_examples``, ``density_probes``/``density_steps``
    and ``trace_matvecs``. See :func:`analyze_model` for the analysis itself.

    Args:
        path: checkpoint file.
        settings: the data subset, model weights and analysis settings.
        data_dir: where to look for the dataset first (default: the checkpoint's).
        eigenvectors_out: when given, the top-k eigenvectors are saved there (``torch.save`` of a dict
            with ``eigenvalues`` and ``vectors``: a list of ``{parameter name: CPU tensor}``), atomically.
        progress: product counts as they are made (see :func:`analyze_model`).
        measures: also these flatness measures, on the same subset and model (see :func:`analyze_model`).
        foreign: read ``path`` as a plain ``state_dict`` of this model and data
            (:func:`fedtrain.foreign.load_foreign`); recorded as ``config["foreign"]``.
        operator_factory: builds the operator from ``(model, batches, device)`` (default: the
            :class:`HessianOperator` of all batches); :mod:`landscape.hessian.distributed` passes one whose
            products are summed over processes.

    Returns:
        :class:`HessianReport` whose ``config`` also records the checkpoint path, SHA-256,
        weights used, split and subset seed.

    Raises:
        CheckpointError, DataNotFoundError, ConfigError: unusable inputs (a device this machine does not
            have included), with a message saying how to fix them.
    """
    if eigenvectors_out is not None and settings.backend != "fedlandscape":
        raise ConfigError("eigenvectors_out needs backend='fedlandscape' (PyHessian's eigenvectors are not exported).")
    device = resolve_device(settings.device)  # before any file is read: a missing GPU is the first thing said
    _refuse_with_subsets(settings, eigenvectors_out is not None, measures)
    checkpoint = open_checkpoint(path, foreign, data_dir)
    weights_used = checkpoint.resolve_weights(settings.weights)
    model = checkpoint.build_model(settings.weights)
    dataset = dataset_of(checkpoint, data_dir)
    if settings.subsets > 1:
        data = evaluation_subsets(dataset, settings.split, settings.num_examples, settings.subsets, settings.seed)
        report = _analyze_subsets(model, data, settings, device, progress=progress, operator_factory=operator_factory)
    else:
        inputs, labels = evaluation_tensors(dataset, settings.split, settings.num_examples, settings.seed)
        report = _analyze(model, inputs, labels, settings, device, keep_eigenvectors=eigenvectors_out is not None,
                          progress=progress, measures=measures, operator_factory=operator_factory)
    report.config.update({
        "checkpoint": str(Path(path)), "checkpoint_sha256": file_sha256(path), "weights": weights_used,
        "model": {"name": checkpoint.model_name, "kwargs": checkpoint.model_kwargs}, "dataset": checkpoint.dataset,
        "split": settings.split, "subset_seed": settings.seed, "checkpoint_round": checkpoint.round,
    })
    report.config["seeds"]["subset"] = settings.seed
    if isinstance(checkpoint, ForeignCheckpoint):
        report.config["foreign"] = checkpoint.provenance()
    if eigenvectors_out is not None:
        payload = {
            "format": "fedlandscape.hessian-eigenvectors",
            "eigenvalues": report.eigenvalues,
            "vectors": report.eigenvectors,
            "checkpoint_sha256": report.config["checkpoint_sha256"],
            "weights": weights_used,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(eigenvectors_out, buffer.getvalue())
        report.config["eigenvectors_out"] = str(eigenvectors_out)
    return report


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved report (``analysis/hessian.json``, the ``to_dict()`` of a :class:`HessianReport`), as untrusted input.

    Checks what tables and figures read: finite eigenvalues (null where a backend gave none), the ratio,
    the trace estimate and its standard error, and a density's grid and values of equal length.

    Raises:
        DataFormatError: unreadable file (see :func:`fedtrain.io.read_json`) or an entry of the wrong type.
    """
    from fedtrain.io import read_json
    from fedtrain.validate import Rule, UntrustedFile, list_of, mapping_rule, number, optional

    file = UntrustedFile(Path(path), "Hessian report (hessian.json)",
                         "Recompute it with `landscape hessian CHECKPOINT --out` (or delete it; `reproduce` then recomputes it).")
    report = file.mapping(read_json(path, kind=file.kind, fix=file.fix))
    file.field(report, "eigenvalues", list_of(optional(number())))
    file.field(report, "ratio", optional(number()), default=None)
    trace = file.field(report, "trace", optional(mapping_rule()), default=None) or {}
    file.field(trace, "estimate", optional(number()), "trace ", default=None)
    file.field(trace, "stderr", optional(number(low=0)), "trace ", default=None)
    # over several data subsets (landscape.hessian.subsets): the standard errors the results table reads
    file.field(trace, "subset_stderr", optional(number(low=0)), "trace ", default=None)
    file.field(report, "eigenvalues_stderr", optional(list_of(optional(number(low=0)))), default=None)
    subsets = file.field(report, "subsets", optional(mapping_rule()), default=None) or {}
    file.field(subsets, "ratio_stderr", optional(number(low=0)), "subsets ", default=None)
    for key in ("config", "hvps", "seconds", "errors"):
        file.field(report, key, optional(mapping_rule()), default=None)
    file.field(report, "converged", optional(list_of(optional(Rule("true or false", lambda v: isinstance(v, bool))))), default=None)
    density = file.field(report, "density", optional(mapping_rule()), default=None)
    if density is not None:
        grid = file.field(density, "grid", list_of(number()), "density ")
        file.field(density, "values", list_of(number(), len(grid)), "density ")
    return report
