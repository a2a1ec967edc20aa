"""From a federated checkpoint and its partition to per-client curvature, drift and the drift plane (``landscape clients``).

:func:`analyze_clients` reads the checkpoint, the run's configuration it records and the partition of its
run directory (``partition.json`` next to ``checkpoints/``, checked against the checkpoint's partition hash;
rebuilt from the recorded recipe when the file is absent), then for each analysed client ``k``:

1. the top eigenvalues and trace of the Hessian of client ``k``'s loss at the global model ``w``;
2. client ``k``'s local model ``w_k`` after ``local_epochs`` of the run's own client update
   (:func:`fedtrain.client.client_update` with the :class:`~fedtrain.client.ClientConfig` of
   :func:`fedtrain.round.plan_round` for the round after the checkpoint, and the run's generator of that
   client and round), and the same Hessian quantities of client ``k``'s loss at ``w_k``;

then the pooled Hessian at ``w`` on the union of the same samples, the local-global gap
(:func:`~landscape.federated.curvature.local_global_gap`), the client drift
(:func:`~landscape.federated.drift.client_drift`) and the plane through ``w`` and two client models
(:func:`~landscape.federated.plane.drift_plane`). :func:`write_clients` saves the JSON and the planes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fedtrain._seeds import derive_seed
from fedtrain.checkpoint import Checkpoint, file_sha256, library_versions, load_checkpoint
from fedtrain.client import ClientConfig, ClientShard, client_update
from fedtrain.config import TrainConfig
from fedtrain.data import ImageDataset, load_dataset, subset_indices
from fedtrain.device import device_record, ieee_float32, resolve_device, to_cpu
from fedtrain.errors import CheckpointError, ConfigError
from fedtrain.evaluate import evaluate_state
from fedtrain.io import json_roundtrip, write_json
from fedtrain.models import build_model
from fedtrain.outpaths import inside, safe_name
from fedtrain.progress import Progress, ProgressCallback, report
from fedtrain.partition import Partition, load_partition, make_partition
from fedtrain.round import client_generator, plan_round
from landscape.federated.curvature import Curvature, curvature, hessian_settings, local_global_gap
from landscape.federated.drift import client_drift
from landscape.federated.plane import drift_plane
from landscape.federated.settings import ClientSettings
from landscape.settings import HessianSettings
from landscape.surface.record import Surface, save_surface

__all__ = ["FORMAT", "ClientsReport", "run_partition", "analyze_clients", "write_clients"]

FORMAT = "fedlandscape.clients"
_HINT = "--clients, --samples-per-client, --top-k, --trace-matvecs or --no-local shorten it"


@dataclass
class ClientsReport:
    """The result of :func:`analyze_clients`.

    Attributes:
        data: the JSON (``to_dict()``).
        planes: the drift-plane surfaces, by the data set the loss is taken on (``pooled``, ``client k``).
        updates: client -> its update :math:`\\Delta_k = w_k - w` (trainable parameters, CPU), as the server would receive it.
    """

    data: dict[str, Any]
    planes: dict[str, Surface] = field(default_factory=dict, repr=False)
    updates: dict[int, dict[str, Tensor]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return self.data


def _run_config(checkpoint: Checkpoint, path: Path) -> TrainConfig:
    """The training configuration a checkpoint records; a checkpoint without one cannot say who its clients were."""
    if not checkpoint.config or not checkpoint.partition:
        raise CheckpointError(
            f"{path} records no training configuration or partition (a wrapped state dict?), so its clients are "
            "unknown. `landscape clients` needs a checkpoint written by `landscape train`."
        )
    try:
        return TrainConfig.from_dict(checkpoint.config)
    except ConfigError as err:
        raise CheckpointError(f"{path} records a training configuration this fedlandscape cannot read: {err}") from err


def run_partition(checkpoint: Checkpoint, config: TrainConfig, dataset: ImageDataset, path: str | os.PathLike[str]) -> Partition:
    """The partition a checkpoint was trained on: its run's ``partition.json``, else rebuilt from the run's recipe.

    Either way its content hash must equal the one the checkpoint records.

    Args:
        checkpoint: the loaded checkpoint.
        config: its run's configuration.
        dataset: its dataset (the labels the partition is rebuilt from).
        path: the checkpoint file (its run directory is the parent of ``checkpoints/``).

    Returns:
        The partition.

    Raises:
        CheckpointError: the partition found or rebuilt is not the one the checkpoint was trained on.
        DataFormatError: a damaged ``partition.json``.
    """
    file = Path(path).resolve()
    artifact = file.parent.parent / "partition.json" if file.parent.name == "checkpoints" else file.parent / "partition.json"
    if artifact.is_file():
        partition, source = load_partition(artifact), str(artifact)
    else:
        partition = make_partition(dataset.train_labels, scheme=config.partition, num_clients=config.num_clients,
                                   alpha=config.alpha, seed=config.seed, samples_per_client=config.samples_per_client,
                                   dataset=config.dataset, num_classes=dataset.num_classes, validation=config.validation)
        source = "rebuilt from the run's configuration"
    expected = (checkpoint.partition or {}).get("hash")
    if partition.hash != expected:
        raise CheckpointError(
            f"The partition ({source}) has hash {partition.hash}, but {file} was trained on partition {expected}. "
            "Analyse the checkpoint inside its own run directory, with the dataset it was trained on."
        )
    return partition


def _trainable(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


@dataclass
class _Context:
    """What every client's analysis shares: models, data on the device, the client optimiser and its round."""

    config: TrainConfig
    settings: ClientSettings
    partition: Partition
    dataset: ImageDataset
    normalize: Callable[[Tensor], Tensor]
    global_state: dict[str, Tensor]
    global_model: nn.Module
    scratch: nn.Module
    worker: nn.Module
    client_config: ClientConfig
    round_index: int
    device: torch.device

    def samples(self, client: int) -> tuple[Tensor, Tensor]:
        """Client ``client``'s Hessian samples: a seeded subset of its shard, normalised, on the device."""
        indices = self.partition.client_indices[client]
        chosen = subset_indices(indices.numel(), self.settings.samples_per_client,
                                derive_seed(self.settings.seed, "client-samples", client))
        rows = indices[chosen].to(self.device)
        return self.normalize(self.dataset.train_images[rows]), self.dataset.train_labels[rows]

    def local_state(self, client: int) -> tuple[dict[str, Tensor], dict[str, Tensor], float]:
        """Client ``client``'s model after the run's client update from the global model, its update and the seconds it took."""
        shard = ClientShard(self.dataset.train_images, self.dataset.train_labels, self.normalize,
                            indices=self.partition.client_indices[client].to(self.device))
        start = time.perf_counter()
        with ieee_float32(self.device):
            update = client_update(self.worker, self.global_state, shard, self.client_config,
                                   client_generator(self.config.seed, self.round_index, client))
        local = {name: value + update.delta[name] for name, value in self.global_state.items()}
        return local, update.delta, time.perf_counter() - start


def _client(context: _Context, client: int, hessian: HessianSettings) -> tuple[dict[str, Any], dict[str, Tensor] | None, dict[str, Tensor] | None]:
    """One client's entry of the report, its local model and its update (``None`` without ``settings.local``)."""
    inputs, labels = context.samples(client)
    at_global = curvature(context.global_model, inputs, labels, hessian)
    entry: dict[str, Any] = {
        "client": client, "num_examples": context.partition.num_examples[client], "hessian_examples": int(labels.numel()),
        "label_histogram": context.partition.label_histograms[client].tolist(),
        "global": {**at_global.to_dict(), **evaluate_state(context.scratch, context.global_state, inputs, labels)},
    }
    local_state = delta = None
    hvps, seconds = at_global.hvps, at_global.seconds
    if context.settings.local:
        local_state, delta, update_seconds = context.local_state(client)
        context.scratch.load_state_dict(local_state)
        at_local = curvature(context.scratch, inputs, labels, hessian)
        entry["local"] = {**at_local.to_dict(), **evaluate_state(context.scratch, local_state, inputs, labels),
                          "update_seconds": update_seconds}
        hvps, seconds = hvps + at_local.hvps, seconds + at_local.seconds + update_seconds
    entry["hvps"], entry["seconds"] = hvps, seconds
    return entry, local_state, delta


def analyze_clients(
    path: str | os.PathLike[str],
    settings: ClientSettings = ClientSettings(),
    *,
    data_dir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
) -> ClientsReport:
    """Per-client and pooled curvature, client drift and the drift plane of a federated checkpoint.

    Cost: per client, two Hessian analyses (top-k Lanczos and a Hutch++ trace) on ``samples_per_client``
    samples and one local epoch; one pooled analysis on the union of those samples; the plane's
    ``plane_steps^2`` points evaluated on the pooled and the two clients' samples. The report records
    seconds and Hessian-vector products per client and in total.

    Args:
        path: a checkpoint written by ``landscape train`` (inside its run directory, or with the partition
            rebuilt from its recorded recipe).
        settings: which clients and samples, the Hessian budgets, the local update, the plane, seeds, device.
        data_dir: where to look for the dataset first (default: the checkpoint's).
        progress: receives :class:`fedtrain.progress.Progress` events: stage ``"clients"`` (one unit per client,
            the detail names it and its lambda_max at the global and the local model), then ``"pooled hessian"``
            and ``"plane"`` (one unit each).

    Returns:
        The :class:`ClientsReport`.

    Raises:
        CheckpointError: an unreadable or foreign checkpoint, or one without its run's configuration and partition.
        DataNotFoundError, DataFormatError: the dataset or ``partition.json`` is missing or damaged.
        ConfigError: a device this machine does not have, plane clients that do not exist, or too few clients.
    """
    started = time.perf_counter()
    device = resolve_device(settings.device)
    file = Path(path)
    checkpoint = load_checkpoint(file)
    config = _run_config(checkpoint, file)
    weights = checkpoint.resolve_weights(settings.weights)  # type: ignore[arg-type]
    global_model = checkpoint.build_model(settings.weights).to(device)  # type: ignore[arg-type]
    dataset = load_dataset(checkpoint.dataset, data_dir if data_dir is not None else checkpoint.data_dir)
    partition = run_partition(checkpoint, config, dataset, file)
    clients = subset_indices(partition.num_clients, settings.clients, settings.seed).tolist()
    plane_pair = _given_pair(settings, partition, clients)
    round_index = min(checkpoint.round, config.rounds - 1)
    on_device = dataset.to(device)
    plan = plan_round(config, round_index, augment=dataset.augmentation == "crop-flip")
    context = _Context(
        config=config, settings=settings, partition=partition, dataset=on_device, normalize=on_device.normalizer(device),
        global_state={k: v.detach().clone() for k, v in global_model.state_dict().items()}, global_model=global_model,
        scratch=build_model(checkpoint.model_name, seed=0, **checkpoint.model_kwargs).to(device).eval(),
        worker=build_model(checkpoint.model_name, seed=0, **checkpoint.model_kwargs).to(device),
        client_config=replace(plan.client_config, local_epochs=settings.local_epochs), round_index=round_index, device=device,
    )
    hessian = hessian_settings(settings)
    names = _trainable(global_model)
    entries, updates, kept = [], [], {}
    report(progress, Progress("clients", 0, len(clients), "clients", detail="per-client Hessians", hint=_HINT))
    for done, client in enumerate(clients, start=1):
        entry, local_state, delta = _client(context, client, hessian)
        entries.append(entry)
        if delta is not None:
            updates.append({name: delta[name].detach().cpu() for name in names})
        if local_state is not None and plane_pair is not None and client in plane_pair:
            kept[client] = local_state
        local = f", {entry['local']['eigenvalues'][0]:.4g} at its own model" if "local" in entry else ""
        report(progress, Progress("clients", done, len(clients), "clients", log=True, detail=(
            f"client {client}: lambda_max {entry['global']['eigenvalues'][0]:.4g} at the global model{local}, "
            f"{entry['hvps']} products, {entry['seconds']:.1f} s")))
    report(progress, Progress("pooled hessian", 0, 1, "hessians", detail=f"{len(clients)} clients' samples pooled"))
    pooled_inputs, pooled_labels = (torch.cat(parts) for parts in zip(*(context.samples(c) for c in clients)))
    pooled = curvature(global_model, pooled_inputs, pooled_labels, hessian)
    report(progress, Progress("pooled hessian", 1, 1, "hessians", detail=f"lambda_max {pooled.lambda_max:.4g}, {pooled.hvps} products"))
    data: dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "settings": settings.to_dict(),
        "checkpoint": _provenance(checkpoint, file, weights, config, partition),
        "client_update": {"round": round_index, **asdict(context.client_config),
                          "generator": "fedtrain.round.client_generator(run seed, round, client)"},
        "clients": entries,
        "pooled": {**pooled.to_dict(), **evaluate_state(context.scratch, context.global_state, pooled_inputs, pooled_labels)},
        "gap": local_global_gap([e["global"]["eigenvalues"][0] for e in entries],
                                [e["hessian_examples"] for e in entries], pooled.lambda_max),
        "seeds": {"clients": settings.seed, "client_samples": f"derive_seed({settings.seed}, 'client-samples', client)",
                  "lanczos": hessian.seeds["lanczos"], "trace": hessian.seeds["trace"], "run": config.seed},
        "device_used": json_roundtrip(device_record(device)), "versions": library_versions(),
    }
    if settings.local:
        data["local_gap"] = local_global_gap([e["local"]["eigenvalues"][0] for e in entries],
                                             [e["hessian_examples"] for e in entries], pooled.lambda_max)
        drift = client_drift(updates, [e["num_examples"] for e in entries])
        for entry, norm, cosine, distance in zip(entries, drift.update_norms, drift.cosines, drift.distances):
            entry.update(update_norm=norm, cosine_with_mean=cosine, distance_to_mean=distance)
        data["drift"] = drift.to_dict()
        if settings.plane and plane_pair is None:
            first, second = drift.most_divergent_pair()
            plane_pair = (clients[first], clients[second])
    planes: dict[str, Surface] = {}
    plane_seconds = 0.0
    if plane_pair is not None:
        start = time.perf_counter()
        report(progress, Progress("plane", 0, 1, "planes", detail=f"global model and clients {plane_pair[0]}, {plane_pair[1]}"))
        planes = _plane(context, plane_pair, kept, (pooled_inputs, pooled_labels))
        plane_seconds = time.perf_counter() - start
        data["plane"] = {"clients": list(plane_pair), "labels": planes["pooled"].metadata["labels"],
                         "model_coordinates": planes["pooled"].metadata["directions"]["model_coordinates"],
                         "steps": settings.plane_steps, "margin": settings.plane_margin, "seconds": plane_seconds,
                         "chosen": "given" if settings.plane_clients is not None else "most divergent pair of updates"}
        report(progress, Progress("plane", 1, 1, "planes", detail=f"{plane_seconds:.1f} s"))
    data["cost"] = _cost(entries, pooled, plane_seconds, time.perf_counter() - started)
    return ClientsReport(data, planes, dict(zip(clients, updates)))


def _given_pair(settings: ClientSettings, partition: Partition, clients: Sequence[int]) -> tuple[int, int] | None:
    """The plane's two clients when given (checked); ``None`` when the drift will choose them or there is no plane."""
    if not (settings.plane and settings.local):
        return None
    if settings.plane_clients is not None:
        missing = [c for c in settings.plane_clients if c >= partition.num_clients]
        if missing:
            raise ConfigError(f"plane_clients {list(settings.plane_clients)}: the run has clients 0..{partition.num_clients - 1} only.")
        return settings.plane_clients
    if len(clients) < 2:
        raise ConfigError("The drift plane needs two clients: analyse at least two (--clients >= 2) or pass --no-plane.")
    return None


def _plane(context: _Context, pair: tuple[int, int], kept: dict[int, dict[str, Tensor]],
           pooled: tuple[Tensor, Tensor]) -> dict[str, Surface]:
    """:func:`drift_plane` through the global model and the two clients' models (updated again when not kept)."""
    models = {"global": context.global_state}
    data = {"pooled": pooled}
    for client in pair:
        models[f"client {client}"] = kept[client] if client in kept else context.local_state(client)[0]
        data[f"client {client}"] = context.samples(client)
    names = _trainable(context.global_model)
    params = {label: {n: state[n] for n in names} for label, state in models.items()}
    return drift_plane(context.global_model, params, data, steps=context.settings.plane_steps,
                       margin=context.settings.plane_margin, batch_size=context.settings.batch_size, device=context.device)


def _provenance(checkpoint: Checkpoint, file: Path, weights: str, config: TrainConfig, partition: Partition) -> dict[str, Any]:
    return {"path": str(file), "sha256": file_sha256(file), "round": checkpoint.round, "weights": weights,
            "model": {"name": checkpoint.model_name, "kwargs": checkpoint.model_kwargs}, "dataset": checkpoint.dataset,
            "algorithm": config.algorithm, "swa": config.swa, "partition": config.partition, "alpha": config.alpha,
            "num_clients": partition.num_clients, "partition_hash": partition.hash, "run_config": config.to_dict()}


def _cost(entries: Sequence[dict[str, Any]], pooled: Curvature, plane_seconds: float, total: float) -> dict[str, Any]:
    per_client_hvps = [e["hvps"] for e in entries]
    per_client_seconds = [e["seconds"] for e in entries]
    return {"seconds": {"total": total, "clients": sum(per_client_seconds), "per_client_mean": sum(per_client_seconds) / len(entries),
                        "pooled": pooled.seconds, "plane": plane_seconds},
            "hvps": {"total": sum(per_client_hvps) + pooled.hvps, "per_client_mean": sum(per_client_hvps) / len(entries),
                     "per_client_max": max(per_client_hvps), "pooled": pooled.hvps},
            "clients": len(entries)}


def write_clients(report: ClientsReport, out_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """Write ``out_dir/<name>.json`` and each drift-plane surface as ``out_dir/<name>-plane-<data>.npz``, atomically.

    Returns:
        The files written; the JSON records the plane files under ``plane.files``.
    """
    folder = Path(out_dir)
    name = safe_name(name)  # names come from the user (--name) or from checkpoint paths: never a path out of out_dir
    written = []
    files = {}
    for data_name, surface in report.planes.items():
        target = inside(folder, f"{name}-plane-{safe_name(data_name.replace(' ', ''))}.npz")
        save_surface(surface, target)
        files[data_name] = target.name
        written.append(target)
    if files:
        report.data["plane"]["files"] = files
    target = inside(folder, f"{name}.json")
    write_json(target, report.to_dict())
    return [target, *written]
