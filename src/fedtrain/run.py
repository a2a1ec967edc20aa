"""A training run on disk: set-up, the loop over :func:`fedtrain.round.federated_round` with its hooks, resumable checkpoints, metrics and summary.

RUN_DIR layout::

    config.json        the resolved TrainConfig
    partition.json     the partition artifact (fedtrain.partition)
    metrics.jsonl      one line per evaluated round (rewritten atomically, never half-written)
    summary.json       final / last-k mean / best accuracy, wall time, rounds/s, the convergence check (fedtrain.convergence)
    checkpoints/       latest.pt, round_XXXXX.pt (kept rounds; always the SWA start round), final.pt

Every random choice is derived from ``(seed, purpose, round, client)`` (:mod:`fedtrain._seeds`), so the
server state (weights, server momentum, SWA mean and count, round) plus the metrics list is all a run needs
to continue; a run killed at any moment and resumed from ``latest.pt`` ends bit-identical on CPU
(timing fields ``seconds`` and ``samples_per_s`` excepted).

**Devices** (``TrainConfig.device``, resolved once by :func:`fedtrain.device.resolve_device`): the uint8
dataset is copied to the device once and every client indexes it there; batches are normalised and
augmented there; the client updates, the aggregation, the server step, SWA and evaluation run there, and
the server state stays there between rounds. Every random draw is made on the CPU generators of
:mod:`fedtrain._seeds` (model initialisation, client sampling, data order, crops and flips), so a GPU run
sees the same clients, batches and augmentations as a CPU run. Checkpoints hold CPU tensors and record the
device used (``state["device_used"]``, also in ``summary.json``); a resume loads them onto its own device.

On a GPU, float32 means float32: TF32 is switched off for the run (cuDNN convolutions and matmuls), so a
GPU round equals the CPU round up to float32 rounding and kernel summation order. Without
``deterministic`` some CUDA kernels (the backward of convolutions) may sum in a varying order, so two GPU
runs, or a GPU run and its resume, agree only to rounding; with ``deterministic=True``
(``torch.use_deterministic_algorithms``) a GPU run resumed on the same GPU is bit-identical, and a model
whose operations have no deterministic CUDA kernel (``resnet18-gn``'s adaptive pooling) is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from fedtrain._numerics import run_numerics
from fedtrain._seeds import derive_seed
from fedtrain.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fedtrain.client import ClientShard, NonFiniteLossError
from fedtrain.cohort import cohort_record, cohort_settings
from fedtrain.config import SWA_FIELDS, TrainConfig, shown_value
from fedtrain.convergence import convergence_of
from fedtrain.data import ImageDataset, load_dataset, subset_indices
from fedtrain.device import device_record, resolve_device
from fedtrain.errors import CheckpointError, ConfigError, LandscapeError
from fedtrain.evaluate import evaluate_state
from fedtrain.holdout import evaluation_set
from fedtrain.io import atomic_write_text, json_roundtrip, read_json, to_json, write_json
from fedtrain.lock import LOCK_NAME, DirectoryLock
from fedtrain.methods import check_method
from fedtrain.models import build_model, check_model_fits, count_parameters
from fedtrain.observers import ObserverHook, RoundObserver, check_observers
from fedtrain.partition import Partition, make_partition, save_partition
from fedtrain.round import RoundData, RoundMetrics, federated_round
from fedtrain.run_files import check_metrics, config_from_record, read_run_config
from fedtrain.server import ServerState, StateDict
from fedtrain.session import recorded_numerics, resume_numerics
from fedtrain.validate import UntrustedFile

__all__ = ["RunPaths", "RoundFn", "train", "run_rounds", "run_inputs", "round_data", "load_run_config", "TIMING_FIELDS"]

# One round: (state, config, data, round_index) -> (new state, metrics), as fedtrain.round.federated_round.
RoundFn = Callable[[ServerState, TrainConfig, RoundData, int], tuple[ServerState, RoundMetrics]]
TIMING_FIELDS = ("seconds", "samples_per_s")  # metrics fields that measure the machine, not the training
_RUN_FILES = ("config.json", "partition.json", "metrics.jsonl", "summary.json")
# Where the data are and what computes the run may change between sessions (another machine, another GPU).
# The cohort mode is how, not what, like the device: a resume may change it (the numbers then agree to rounding).
_IGNORED_ON_RESUME = ("data_dir", "device", "deterministic", "cohort", "cohort_chunk", "cohort_compile")
_IGNORED_ON_BRANCH = (*SWA_FIELDS, *_IGNORED_ON_RESUME, "preset", "checkpoint_every", "checkpoint_rounds", "observers")


@dataclass(frozen=True)
class RunPaths:
    """Where a run's files live."""

    root: Path

    config = property(lambda self: self.root / "config.json")
    partition = property(lambda self: self.root / "partition.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    summary = property(lambda self: self.root / "summary.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    latest = property(lambda self: self.root / "checkpoints" / "latest.pt")
    final = property(lambda self: self.root / "checkpoints" / "final.pt")

    def at_round(self, round: int) -> Path:
        """The kept checkpoint after ``round`` completed rounds."""
        return self.checkpoints / f"round_{round:05d}.pt"


@dataclass
class _RunLog:
    """The run's mutable bookkeeping shared by the hooks: metrics so far and time accounting."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0
    session_start: float = field(default_factory=time.perf_counter)
    samples_since_eval: int = 0
    rounds_done: int = 0
    saved_round: int | None = None
    time_at_last_eval: float = field(default_factory=time.perf_counter)
    observers: dict[str, Any] = field(default_factory=dict)  # each observer's state_dict, for the checkpoints

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start


def run_rounds(
    state: ServerState,
    *,
    rounds: int,
    step: Callable[[ServerState], tuple[ServerState, RoundMetrics]],
    on_round_end: Sequence[Callable[[ServerState, RoundMetrics], None]] = (),
) -> ServerState:
    """The only federated loop: ``step`` until ``rounds`` rounds are done, calling each hook after every round."""
    while state.round < rounds:
        state, info = step(state)
        for hook in on_round_end:
            hook(state, info)
    return state


def load_run_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The resolved config saved in ``run_dir`` (for ``--resume``).

    Raises:
        ConfigError: ``run_dir`` holds no run.
    """
    path = RunPaths(Path(run_dir)).config
    if not path.is_file():
        raise ConfigError(f"{run_dir} holds no training run (no config.json); there is nothing to resume. Start it without --resume.")
    return read_run_config(path)


def _differences(a: TrainConfig, b: TrainConfig, ignored: Sequence[str]) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} vs {db[k]!r}" for k in da if k not in ignored and da[k] != db[k]]


_OWN_CHECKPOINT = re.compile(r"\.?(latest|final|round_\d{5})\.pt(\..+\.tmp)?")  # and atomic writes' leftovers


def _check_dir(paths: RunPaths, *, resume: bool, overwrite: bool) -> None:
    """Refuse a non-empty ``--out`` without ``--overwrite``, and ``--overwrite`` of a folder that is not a run of ours."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: choose one.")
    if resume or not paths.root.exists() or not any(p.name != LOCK_NAME for p in paths.root.iterdir()):
        return
    if not overwrite:
        raise ConfigError(
            f"{paths.root} already exists and is not empty. Pass --resume to continue that run, --overwrite to "
            "replace it, or choose another --out."
        )
    if (why := _not_a_run(paths)) is not None:
        raise ConfigError(
            f"--overwrite replaces only a training run written by this toolkit, and {paths.root} is not one ({why}); "
            "nothing was deleted. Choose another --out, or move your own files out of that folder first."
        )


def _not_a_run(paths: RunPaths) -> str | None:
    """Why ``paths.root`` is not a run directory this toolkit wrote (``None`` when it is one).

    A run writes a valid ``config.json`` and ``partition.json`` before its first round, and only its own
    checkpoint names under ``checkpoints/``; a user's folder that merely has a ``config.json`` is not one.
    """
    try:
        load_run_config(paths.root)
        if not isinstance(read_json(paths.partition).get("hash"), str):
            return "its partition.json has no partition hash"
    except (LandscapeError, OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        return f"no readable config.json and partition.json of a run: {(str(err) or type(err).__name__).splitlines()[0][:200]}"
    if paths.checkpoints.exists():
        if not paths.checkpoints.is_dir():
            return "its checkpoints is not a folder"
        foreign = sorted(p.name for p in paths.checkpoints.iterdir() if not _OWN_CHECKPOINT.fullmatch(p.name))
        if foreign:
            return f"checkpoints/ holds files this toolkit did not write: {', '.join(foreign[:5])}"
    return None


def _clear_previous_run(paths: RunPaths) -> None:
    """Delete the previous run's own files (:func:`_check_dir` made sure it is one); anything else in the folder stays."""
    for name in _RUN_FILES:
        (paths.root / name).unlink(missing_ok=True)
    shutil.rmtree(paths.checkpoints, ignore_errors=True)


def _server_state(ckpt: Checkpoint) -> ServerState:
    """The server state a checkpoint holds, its tensors where the checkpoint was loaded to."""
    return ServerState(
        round=ckpt.round,
        params=ckpt.weights,
        momentum=ckpt.state.get("server_momentum"),
        swa_params=ckpt.swa_weights,
        swa_count=ckpt.swa_count,
        method_state=dict(ckpt.state.get("method_state", {})),
        client_states={int(k): dict(v) for k, v in ckpt.state.get("client_states", {}).items()},
    )


_CHECKPOINT_FIX = "Resume from an earlier checkpoint of the run (checkpoints/round_XXXXX.pt), or start the run afresh."


def _check_resumable(config: TrainConfig, ckpt: Checkpoint, path: Path, what: str) -> list[dict[str, Any]]:
    """The checkpoint's metrics, once its model, dataset, round and SWA state are those a run of ``config`` can have.

    :func:`load_checkpoint` has already checked the file on its own (types, the weights against the declared
    model, finiteness); this checks it against the run: the same model and dataset, ``round`` within
    ``config.rounds``, at most ``round`` SWA models, and evaluations of rounds done.

    Raises:
        CheckpointError: the first inconsistency, naming the checkpoint.
    """
    file = UntrustedFile(path, f"{what} checkpoint", _CHECKPOINT_FIX, CheckpointError)
    kwargs = {"input_shape": ckpt.model_kwargs.get("input_shape"), "num_classes": ckpt.model_kwargs.get("num_classes"),
              **json_roundtrip(config.model_kwargs)}
    if (ckpt.model_name, ckpt.dataset, ckpt.model_kwargs) != (config.model, config.dataset, kwargs):
        file.fail(f"it holds model {ckpt.model_name!r} {shown_value(ckpt.model_kwargs)} on {ckpt.dataset!r}, this run trains "
                  f"{config.model!r} with {shown_value(config.model_kwargs)} on {config.dataset!r}")
    if ckpt.round > config.rounds:
        file.fail(f"it is at round {ckpt.round}, beyond the run's {config.rounds} rounds")
    if (unknown := sorted(int(k) for k in ckpt.state.get("client_states", {}) if int(k) >= config.num_clients)):
        file.fail(f"it holds the method state of client(s) {unknown[:5]}, but the run has {config.num_clients} clients (0..{config.num_clients - 1})")
    if ckpt.swa_count > ckpt.round or (ckpt.swa_weights is not None and not config.swa):
        file.fail(f"it holds an SWA model of {ckpt.swa_count} collected models after {ckpt.round} rounds"
                  f"{'' if config.swa else ', but the run does not use --swa'}")
    return check_metrics(ckpt.state.get("metrics", []), file, rounds=ckpt.round)


def _start_from_checkpoint(
    config: TrainConfig, path: Path, partition_hash: str, device: torch.device, *, branch: bool
) -> tuple[ServerState, list, float]:
    ckpt = load_checkpoint(path, map_location=device)
    what = "--init-from checkpoint" if branch else "run being resumed"
    source = config_from_record(ckpt.config, UntrustedFile(path, f"{what} checkpoint", _CHECKPOINT_FIX, CheckpointError))
    diff = _differences(config, source, _IGNORED_ON_BRANCH if branch else _IGNORED_ON_RESUME)
    if diff:
        raise ConfigError(f"The {what} ({path}) was trained with a different configuration: {'; '.join(diff)}. "
                          "Use the same settings (only the SWA settings may differ for --init-from).")
    if (ckpt.partition or {}).get("hash") != partition_hash:
        raise CheckpointError(f"{path} was trained on another partition (hash {(ckpt.partition or {}).get('hash')}, "
                              f"this run's is {partition_hash}). Use the same dataset, partition settings and seed.")
    if branch:
        if not config.swa or ckpt.swa_weights is not None or ckpt.round > config.swa_start_round:
            raise ConfigError(
                f"--init-from branches a --swa run off a run without SWA at a round <= the SWA start "
                f"({config.swa_start_round}); {path} is at round {ckpt.round}"
                f"{' and has an SWA model' if ckpt.swa_weights is not None else ''}"
                f"{'' if config.swa else ' and this run does not use --swa'}. Use that run's "
                f"checkpoints/round_{config.swa_start_round:05d}.pt with --swa."
            )
    metrics = _check_resumable(config, ckpt, path, what)
    return _server_state(ckpt), metrics, float(ckpt.state.get("elapsed_seconds", 0.0))


def train(
    config: TrainConfig | None,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    init_from: str | os.PathLike[str] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    round_fn: RoundFn = federated_round,
    threads: int | None = None,
    observers: Sequence[RoundObserver] = (),
) -> dict[str, Any]:
    """Train a federated run into ``out_dir`` and return its summary.

    The run holds ``out_dir``'s :class:`~fedtrain.lock.DirectoryLock` throughout: a second ``train`` of it
    (fresh or resumed) is refused at once, naming this process.

    Args:
        config: the resolved settings; with ``resume=True`` it may be ``None`` (the saved config is used)
            and otherwise must equal the saved one (except ``data_dir``, ``device`` and ``deterministic``,
            which are taken from ``config``; with ``None`` they, and ``threads``, are those recorded in
            ``latest.pt``: :func:`fedtrain.session.resume_numerics`).
        out_dir: the run directory; refused if it exists and is not empty, unless ``resume`` or ``overwrite``.
        resume: continue from ``checkpoints/latest.pt`` (from scratch if the run died before its first checkpoint).
        overwrite: replace the previous run in ``out_dir``: refused unless it is a run this toolkit wrote; its
            own files are deleted only once the new run's data, partition, model and checkpoint are loaded.
        init_from: a checkpoint of a run without SWA, at a round <= this run's SWA start, with otherwise
            the same settings: this ``--swa`` run continues from it (exactly as if trained from scratch).
        progress: called after every round with ``round``, ``rounds``, ``train_loss``, ``lr``, ``clients`` and
            ``test_accuracy`` (None when the round was not evaluated).
        round_fn: what runs one round, with :func:`~fedtrain.round.federated_round`'s signature: in this
            process by default; :mod:`fedtrain.flower` passes one that sends the clients' work to Flower nodes.
        threads: torch's CPU thread count for the run (restored after it); ``None``: torch's current one, or
            on ``resume`` the one recorded in ``latest.pt``.
        observers: measurements of the global model after chosen rounds, merged into their metrics records
            (:mod:`fedtrain.observers`); they must match ``config.observers``, and their states are checkpointed.

    Returns:
        The summary also written to ``summary.json``.

    Raises:
        ConfigError: bad settings, a device this machine does not have, a model without deterministic GPU
            kernels under ``deterministic``, or a directory/checkpoint that does not fit the settings.
        CheckpointError: an unreadable checkpoint.
        DirectoryBusyError: another process writes ``out_dir``.
        NonFiniteLossError: training diverged; the last good checkpoint is kept.
    """
    paths = RunPaths(Path(out_dir))
    with DirectoryLock(paths.root):  # removed again (with the folder, if it made it) when nothing was written
        given = config is not None
        config = _run_config(config, paths, resume=resume, init_from=init_from)
        if resume:
            asked = {"device": config.device, "deterministic": config.deterministic} if given else {}
            config, threads, _ = resume_numerics(config, recorded_numerics(paths.latest), threads=threads, **asked)
        device = resolve_device(config.device)  # before the directory is touched: a missing GPU changes nothing on disk
        check_method(config)  # likewise a method that cannot be imported or takes other settings
        _check_dir(paths, resume=resume, overwrite=overwrite)
        with run_numerics(device, deterministic=config.deterministic, threads=threads):
            return _train(config, paths, device, resume=resume, init_from=init_from, progress=progress, round_fn=round_fn,
                          overwrite=overwrite, observers=observers)


def _train(
    config: TrainConfig,
    paths: RunPaths,
    device: torch.device,
    *,
    resume: bool,
    init_from: str | os.PathLike[str] | None,
    progress: Callable[[dict[str, Any]], None] | None,
    round_fn: RoundFn = federated_round,
    overwrite: bool = False,
    observers: Sequence[RoundObserver] = (),
) -> dict[str, Any]:
    """:func:`train` once the directory is checked, on ``device``, inside the run's numerics settings."""
    check_observers(observers, config)
    dataset = load_dataset(config.dataset, config.data_dir, test=config.validation == 0)  # a validation run never reads the test split
    partition, model_kwargs = run_inputs(config, dataset)
    # Initialised on the CPU from the run's seed, then moved: every device starts from the same weights.
    initial = build_model(config.model, seed=derive_seed(config.seed, "model-init"), **model_kwargs)
    state = ServerState(round=0, params={k: v.detach().clone().to(device) for k, v in initial.state_dict().items()})
    log = _RunLog()
    if resume and paths.latest.is_file():
        state, log.metrics, log.elapsed_before = _start_from_checkpoint(config, paths.latest, partition.hash, device, branch=False)
    elif init_from is not None:
        state, log.metrics, log.elapsed_before = _start_from_checkpoint(config, Path(init_from), partition.hash, device, branch=True)

    if overwrite:  # only now: a new run that cannot start (no data, a bad checkpoint) leaves the previous one whole
        _clear_previous_run(paths)
    paths.root.mkdir(parents=True, exist_ok=True)
    write_json(paths.config, config.to_dict())
    save_partition(partition, paths.partition)
    _write_metrics(paths, log.metrics)

    on_device = dataset.to(device)  # the uint8 images, once; clients index them there
    data = round_data(config, on_device, partition, model_kwargs)
    device_used = json_roundtrip(device_record(device))  # plain values (torch.__version__ is a str subclass weights_only refuses)
    hooks = _Hooks(config, paths, partition, model_kwargs, log, _test_evaluation(config, on_device, model_kwargs), progress, device_used)
    observe = ObserverHook(observers, lambda: log.metrics, lambda: _write_metrics(paths, log.metrics), log.observers)
    if observers and state.round > 0:  # continue the observers where the checkpoint left them
        observe.restore(load_checkpoint(paths.latest if init_from is None else Path(init_from)).state.get("observers", {}))
    log.time_at_last_eval, log.rounds_done = time.perf_counter(), state.round
    try:
        state = run_rounds(state, rounds=config.rounds, step=lambda s: round_fn(s, config, data, s.round),
                           on_round_end=(hooks.evaluate, observe, hooks.checkpoint, hooks.report))
    except NonFiniteLossError as err:
        last = (f"the last good checkpoint is {paths.latest} (after round {log.saved_round})" if log.saved_round is not None
                else "no checkpoint was written in this session")
        raise NonFiniteLossError(f"{err} Training stopped at round {log.rounds_done + 1}; {last}.") from None
    except RuntimeError as err:
        if config.deterministic and "deterministic" in str(err):
            raise ConfigError(
                f"--deterministic: model {config.model!r} uses an operation without a deterministic kernel on {device} "
                f"({str(err).splitlines()[0][:200]}). Train without --deterministic (resumes then agree only to "
                "rounding), or choose a model whose operations all have one (cnn, mlp)."
            ) from None
        raise
    if not paths.final.is_file():  # resumed a finished run, or finished before this session
        save_checkpoint(hooks.make_checkpoint(state), paths.final)
    summary = _summary(config, log, paths, partition.hash, count_parameters(initial), device_used)
    # The mode a round actually ran (auto resolved on this device), and whether unequal batches were padded.
    method = check_method(config)
    cohort = cohort_settings(config, data.worker, method_refusal=method.vmap_refusal())
    summary["cohort_used"] = cohort_record(cohort, [s.num_examples for s in data.shards])
    summary["method_settings"] = method.settings_record()  # every setting typed, defaults included (method_args: as given)
    write_json(paths.summary, summary)
    return summary


def run_inputs(config: TrainConfig, dataset: ImageDataset) -> tuple[Partition, dict[str, Any]]:
    """The run's partition of ``dataset`` and its model's arguments: the same wherever they are computed (server or Flower node)."""
    partition = make_partition(
        dataset.train_labels, scheme=config.partition, num_clients=config.num_clients, alpha=config.alpha,
        seed=config.seed, samples_per_client=config.samples_per_client, dataset=config.dataset,
        num_classes=dataset.num_classes, validation=config.validation,
    )
    model_kwargs = {"input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes, **config.model_kwargs}
    check_model_fits(config.model, config.model_kwargs, input_shape=list(dataset.input_shape), num_classes=dataset.num_classes)
    return partition, model_kwargs


def round_data(config: TrainConfig, dataset: ImageDataset, partition: Partition, model_kwargs: dict[str, Any]) -> RoundData:
    """The clients' shards as index sets into ``dataset`` (on its device) and a scratch model there."""
    device = dataset.train_images.device
    normalize = dataset.normalizer(device)
    shards = [ClientShard(dataset.train_images, dataset.train_labels, normalize, indices=idx.to(device))
              for idx in partition.client_indices]
    worker = build_model(config.model, seed=0, **model_kwargs).to(device)
    return RoundData(shards=shards, augment=dataset.augmentation == "crop-flip", worker=worker)


def _run_config(config: TrainConfig | None, paths: RunPaths, *, resume: bool, init_from: str | os.PathLike[str] | None) -> TrainConfig:
    """The run's config: ``config``, or for a resume the saved one (refusing changed settings)."""
    if resume:
        saved = load_run_config(paths.root)
        if config is not None and (diff := _differences(config, saved, _IGNORED_ON_RESUME)):
            raise ConfigError(f"{paths.root} was started with different settings: {'; '.join(diff)}. Resume without changing them.")
        config = replace(saved, **{k: getattr(config, k) for k in _IGNORED_ON_RESUME}) if config is not None else saved
    elif config is None:
        raise ConfigError("train() needs a config unless resume=True.")
    if init_from is not None and resume:
        raise ConfigError("--init-from starts a new run; it cannot be combined with --resume.")
    return config


def _test_evaluation(config: TrainConfig, dataset: ImageDataset, model_kwargs: dict[str, Any]) -> Callable[[StateDict], dict[str, float]]:
    """Loss and accuracy of a state dict on the run's fixed test subset (BatchNorm statistics recomputed on 2,048 training images).

    Everything lies on the dataset's device: the normalised test subset (computed once), the BatchNorm
    images (normalised per batch) and the evaluation model.
    """
    device = dataset.train_images.device
    test_x, test_y = evaluation_set(config, dataset)  # the validation split instead when config.validation > 0
    bn_idx = subset_indices(dataset.train_labels.numel(), 2048, derive_seed(config.seed, "batchnorm")).to(device)
    normalize = dataset.normalizer(device)
    evaluator = build_model(config.model, seed=0, **model_kwargs).to(device)

    def evaluate(params: StateDict) -> dict[str, float]:
        bn_batches = (normalize(dataset.train_images[bn_idx[i : i + 256]]) for i in range(0, bn_idx.numel(), 256))
        return evaluate_state(evaluator, params, test_x, test_y, batchnorm_batches=bn_batches)

    return evaluate


@dataclass(frozen=True)
class _Hooks:
    """The loop's hooks after every round: evaluation, checkpoint policy and progress, sharing the run's log."""

    config: TrainConfig
    paths: RunPaths
    partition: Partition
    model_kwargs: dict[str, Any]
    log: _RunLog
    evaluate_params: Callable[[StateDict], dict[str, float]]
    progress: Callable[[dict[str, Any]], None] | None
    device_used: dict[str, Any]

    def evaluate(self, state: ServerState, info: RoundMetrics) -> None:
        """Evaluate the SWA model once it exists (else the global one) at the rounds the config names; write metrics."""
        log = self.log
        log.rounds_done = state.round
        log.samples_since_eval += info.num_samples
        if not self.config.evaluates_at(state.round - 1):
            return
        use_swa = state.swa_params is not None
        result = self.evaluate_params(state.swa_params if use_swa else state.params)
        now = time.perf_counter()
        log.metrics.append({
            "round": state.round, "train_loss": info.train_loss, "test_loss": result["loss"],
            "test_accuracy": result["accuracy"], "lr": info.lr, "model": "swa" if use_swa else "global",
            "swa_count": state.swa_count, "seconds": log.elapsed,
            "samples_per_s": log.samples_since_eval / max(now - log.time_at_last_eval, 1e-9),
            **({"eval_split": "validation"} if self.config.validation else {}),  # absent: the test split
        })
        log.samples_since_eval, log.time_at_last_eval = 0, now
        _write_metrics(self.paths, log.metrics)

    def checkpoint(self, state: ServerState, info: RoundMetrics) -> None:
        """``latest.pt`` at evaluations and every ``checkpoint_every`` rounds; kept rounds (and a plain run's SWA start); ``final.pt``."""
        config, log, done = self.config, self.log, state.round
        evaluated = bool(log.metrics) and log.metrics[-1]["round"] == done
        every = config.checkpoint_every > 0 and done % config.checkpoint_every == 0
        kept = done in config.checkpoint_rounds or (not config.swa and done == config.swa_start_round)
        if not (evaluated or every or kept or done == config.rounds):
            return
        ckpt = self.make_checkpoint(state)
        save_checkpoint(ckpt, self.paths.latest)
        log.saved_round = done
        if kept:
            save_checkpoint(ckpt, self.paths.at_round(done))
        if done == config.rounds:
            save_checkpoint(ckpt, self.paths.final)

    def report(self, state: ServerState, info: RoundMetrics) -> None:
        """Call ``progress`` with the round's numbers and its test accuracy when it was evaluated."""
        if self.progress is not None:
            log = self.log
            last = log.metrics[-1] if log.metrics and log.metrics[-1]["round"] == state.round else None
            self.progress({"round": state.round, "rounds": self.config.rounds, "train_loss": info.train_loss, "lr": info.lr,
                           "clients": info.clients, "test_accuracy": None if last is None else last["test_accuracy"]})

    def make_checkpoint(self, state: ServerState) -> Checkpoint:
        """The checkpoint of ``state`` with the run's config, partition, metrics and elapsed time."""
        return _checkpoint(self.config, self.model_kwargs, self.partition, state, self.log, self.device_used)


def _checkpoint(
    config: TrainConfig, model_kwargs: dict, partition: Partition, state: ServerState, log: _RunLog, device_used: dict[str, Any]
) -> Checkpoint:
    """The checkpoint of ``state``; its tensors may lie on the run's device (:func:`save_checkpoint` writes CPU copies)."""
    return Checkpoint(
        model_name=config.model,
        model_kwargs=model_kwargs,
        weights=state.params,
        dataset=config.dataset,
        data_dir=config.data_dir,
        swa_weights=state.swa_params,
        swa_count=state.swa_count,
        partition={**partition.spec, "hash": partition.hash},
        config=config.to_dict(),
        round=state.round,
        state={
            "server_momentum": state.momentum,
            "metrics": [dict(m) for m in log.metrics],
            "elapsed_seconds": log.elapsed,
            "rng": {"scheme": "blake2b(seed:purpose:round:client) per component; no stored generator state", "seed": config.seed},
            "device_used": device_used,
            **({"observers": log.observers} if log.observers else {}),
            # a method's own state (fedtrain.methods); absent for the built-ins, whose files stay as they were
            **({"method_state": state.method_state} if state.method_state else {}),
            **({"client_states": {str(k): v for k, v in sorted(state.client_states.items())}} if state.client_states else {}),
        },
    )


def _write_metrics(paths: RunPaths, metrics: list[dict[str, Any]]) -> None:
    # one compact line per evaluation; to_json's strictness (NaN/inf -> null) applies to every line
    atomic_write_text(paths.metrics, "".join(json.dumps(json.loads(to_json(m))) + "\n" for m in metrics))


def _summary(
    config: TrainConfig, log: _RunLog, paths: RunPaths, partition_hash: str, num_parameters: int, device_used: dict[str, Any]
) -> dict[str, Any]:
    accs = [m["test_accuracy"] for m in log.metrics]
    last = accs[-config.last_k :]
    best = max(range(len(accs)), key=lambda i: accs[i]) if accs else None
    wall = log.elapsed
    return {
        "algorithm": config.algorithm, "swa": config.swa, "dataset": config.dataset, "model": config.model,
        "num_parameters": num_parameters, "rounds": config.rounds,
        "final_accuracy": accs[-1] if accs else None,
        "final_test_loss": log.metrics[-1]["test_loss"] if log.metrics else None,
        "last_k": len(last), "last_k_mean_accuracy": sum(last) / len(last) if last else None,
        "best_accuracy": None if best is None else accs[best],
        "best_round": None if best is None else log.metrics[best]["round"],
        "evaluated_model": log.metrics[-1]["model"] if log.metrics else None,
        "swa_count": log.metrics[-1]["swa_count"] if log.metrics else 0,
        "wall_seconds": wall, "rounds_per_second": config.rounds / wall if wall > 0 else None,
        "partition_hash": partition_hash, "final_checkpoint": str(paths.final), "seed": config.seed,
        "device_used": device_used,
        **({"eval_split": "validation", "validation": config.validation} if config.validation else {}),
        "convergence": convergence_of(log.metrics, config.rounds).to_dict(),
    }
