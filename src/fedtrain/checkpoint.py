"""Self-describing checkpoints: what a file holds, how it is written atomically and read safely.

A checkpoint is a plain dict of tensors and JSON-like values, saved with ``torch.save`` and read back
with ``torch.load(..., weights_only=True)``, so loading a file from elsewhere can never execute code.
It holds everything needed to rebuild the model and its data without any other flag:

=================  ==========================================================================
key                content
=================  ==========================================================================
format             ``"fedlandscape.checkpoint"`` (foreign files are recognised by its absence)
format_version     integer, bumped on incompatible changes
model              ``{"name": str, "kwargs": {"input_shape": [C, H, W], "num_classes": int, ...}}``
weights            state dict of the global model
swa                ``None`` or ``{"weights": state dict, "count": int}`` (running mean of globals)
data               ``{"dataset": str, "data_dir": str | None}``
partition          partition spec and content hash, or ``None``
config             the resolved training configuration
round              number of completed rounds
state              training state needed to resume (server optimiser, RNG states); opaque here
                   but for the checked keys below
versions           library versions that wrote the file
=================  ==========================================================================

A method of :mod:`fedtrain.methods` with persistent state adds two optional keys to ``state`` (a FedAvg,
FedSAM or FedASAM checkpoint has neither, so files written before them load unchanged):
``method_state``, the method's server state, and ``client_states``, ``{"<client id>": client state}``; both
nested dicts (at most :data:`MAX_STATE_DEPTH` levels) of tensors, numbers and strings, every tensor finite.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
from torch import nn

from fedtrain.config import setting_problem
from fedtrain.errors import CheckpointError, ConfigError
from fedtrain.io import atomic_write_bytes, to_plain
from fedtrain.models import build_model, declared_state_dict
from fedtrain.validate import (
    MAX_CHECKPOINT_BYTES,
    MAX_MODEL_VALUES,
    Rule,
    UntrustedFile,
    integer,
    list_of,
    mapping_rule,
    number,
    optional,
    shown_value,
    text,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
    "library_versions",
    "read_torch_file",
    "check_finite",
]

FORMAT = "fedlandscape.checkpoint"
FORMAT_VERSION = 1
WeightsChoice = Literal["auto", "swa", "global"]


@dataclass(frozen=True)
class Checkpoint:
    """The content of a checkpoint file (see the module docstring for the meaning of each field)."""

    model_name: str
    model_kwargs: dict[str, Any]
    weights: dict[str, torch.Tensor]
    dataset: str
    data_dir: str | None = None
    swa_weights: dict[str, torch.Tensor] | None = None
    swa_count: int = 0
    partition: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    round: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def has_swa(self) -> bool:
        """Whether an SWA model (at least one collected global model) is stored."""
        return self.swa_weights is not None and self.swa_count > 0

    def resolve_weights(self, weights: WeightsChoice = "auto") -> Literal["swa", "global"]:
        """Which weights ``weights`` selects: ``auto`` is the SWA model when there is one, else the global one."""
        if weights == "auto":
            return "swa" if self.has_swa else "global"
        if weights == "swa" and not self.has_swa:
            raise CheckpointError(
                f"{self.path or 'This checkpoint'} has no SWA model (the run did not use --swa or had not "
                "reached the SWA start). Use --weights global."
            )
        if weights not in ("swa", "global"):
            raise CheckpointError(f"weights must be 'auto', 'swa' or 'global', got {weights!r}.")
        return weights

    def state_dict(self, weights: WeightsChoice = "auto") -> dict[str, torch.Tensor]:
        """The selected state dict."""
        return self.swa_weights if self.resolve_weights(weights) == "swa" else self.weights  # type: ignore[return-value]

    def build_model(self, weights: WeightsChoice = "auto") -> nn.Module:
        """A fresh model with the selected weights loaded, in eval mode."""
        model = build_model(self.model_name, **self.model_kwargs)
        try:
            model.load_state_dict(self.state_dict(weights))
        except RuntimeError as err:
            raise CheckpointError(
                f"The weights in {self.path or 'the checkpoint'} do not fit model {self.model_name!r} "
                f"with {self.model_kwargs}: {str(err).splitlines()[0]}"
            ) from err
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        """The dict that :func:`save_checkpoint` writes."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": {"name": self.model_name, "kwargs": to_plain(self.model_kwargs)},
            "weights": self.weights,
            "swa": None if self.swa_weights is None else {"weights": self.swa_weights, "count": self.swa_count},
            "data": {"dataset": self.dataset, "data_dir": self.data_dir},
            "partition": self.partition,
            "config": self.config,
            "round": self.round,
            "state": self.state,
            "versions": self.versions or library_versions(),
        }


def library_versions() -> dict[str, str]:
    """Versions of the libraries, and the torch thread count, that matter for reproducing a result bit for bit."""
    import numpy

    try:
        from importlib.metadata import version

        ours = version("fedlandscape")
    except Exception:  # noqa: BLE001 - running from a source tree without installation
        ours = "unknown"
    # The thread count changes the order of floating-point reductions, hence the last bits of every result.
    return {"fedlandscape": ours, "torch": str(torch.__version__), "numpy": str(numpy.__version__),
            "python": platform.python_version(), "torch_threads": str(torch.get_num_threads())}


def _on_cpu(value: Any) -> Any:
    """``value`` with every tensor inside (dicts, lists, tuples) on the CPU; CPU tensors are kept as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def save_checkpoint(checkpoint: Checkpoint | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Serialise a checkpoint atomically (temporary file + rename). Returns the path written.

    Tensors are written as CPU tensors whatever device holds them, so every file loads on a CPU-only machine.
    """
    import io

    payload = _on_cpu(checkpoint.to_dict() if isinstance(checkpoint, Checkpoint) else dict(checkpoint))
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], *, map_location: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint with ``weights_only=True``, its tensors on ``map_location`` (the CPU by default), and validate it.

    The file is untrusted input (:mod:`fedtrain.validate`): its size is bounded before reading; it must be
    a zip archive (``torch.save``'s format) holding only tensors and plain values; every field has its
    type and range (``round >= 0``, ``swa.count >= 0``, model kwargs a mapping...); the model its kwargs
    declare is built on the meta device (no memory) and must hold at most
    :data:`~fedtrain.validate.MAX_MODEL_VALUES` values, take the dataset's input shape and classes, and
    have exactly the weights' names and shapes (the SWA weights' and server momentum's too); every
    floating-point weight must be finite. So every command that reads a checkpoint (``train --resume``,
    ``--init-from``, ``hessian``, ``plot-surface``, ``reproduce``) refuses a bad one here, before it is used.

    Raises:
        CheckpointError: the file is missing, too large, truncated, not a torch file, not one of ours,
            or its content is inconsistent (the message names the field and how to fix it).
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"No checkpoint at {file}: the file does not exist. Check the path.")
    untrusted = UntrustedFile(file, "checkpoint", _FIX, CheckpointError)
    raw = read_torch_file(untrusted, map_location)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is not a fedlandscape checkpoint (it lacks the format marker {FORMAT!r}); it may be a bare "
            "state dict from another tool. Write checkpoints with `landscape train`, or wrap a state dict with "
            "fedtrain.checkpoint.Checkpoint(model_name=..., model_kwargs=..., weights=..., dataset=...)."
        )
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format version {shown_value(raw.get('format_version'))}, this fedlandscape reads version "
            f"{FORMAT_VERSION}. Use the fedlandscape version that wrote it."
        )
    checkpoint = _from_raw(raw, untrusted)
    _check_weights(checkpoint, untrusted)
    return checkpoint


_FIX = "Use a checkpoint written by `landscape train` (an earlier round's checkpoint of the same run, if this one is damaged)."
_TENSOR = Rule("a tensor", lambda v: isinstance(v, torch.Tensor))
_STATE_DICT = mapping_rule(_TENSOR)
MAX_STATE_DEPTH = 4  # levels of nested dicts in a method's state (FedGAMMA's {"c": {name: tensor}} has 2)


def _state_leaf(value: Any) -> bool:
    return value is None or isinstance(value, (torch.Tensor, str, int, float, bool))


def _nested(value: Any, depth: int) -> bool:
    """A dict with string keys of leaves and such dicts, at most ``depth`` levels deep."""
    return depth > 0 and isinstance(value, Mapping) and all(
        isinstance(k, str) and (_state_leaf(v) or _nested(v, depth - 1)) for k, v in value.items())


_METHOD_STATE = Rule(f"a mapping (at most {MAX_STATE_DEPTH} levels) of tensors, numbers and strings",
                     lambda v: _nested(v, MAX_STATE_DEPTH))
_CLIENT_STATES = Rule(f"a mapping of client ids (\"0\", \"1\", ...) to mappings (at most {MAX_STATE_DEPTH} levels) of "
                      "tensors, numbers and strings",
                      lambda v: isinstance(v, Mapping) and all(isinstance(k, str) and k.isdigit() and _nested(x, MAX_STATE_DEPTH)
                                                               for k, x in v.items()))


def _state_tensors(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested method state, by its dotted path (``c.fc.weight``)."""
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    if isinstance(value, Mapping):
        return {path: t for k, v in value.items() for path, t in _state_tensors(v, f"{prefix}.{k}" if prefix else str(k)).items()}
    return {}


def read_torch_file(file: UntrustedFile, map_location: torch.device | str = "cpu") -> Any:
    """The content of a ``torch.save`` file: size bounded, a zip archive, loaded with ``weights_only=True``.

    The one way the toolkit reads a torch file (checkpoints, and plain state dicts in :mod:`fedtrain.foreign`):
    at most :data:`MAX_CHECKPOINT_BYTES` on disk and unpacked, never a pickle that could run code.

    Raises:
        LandscapeError: ``file``'s error for an oversized, empty, truncated, non-zip or unsafe file.
    """
    import zipfile

    def unreadable(why: str) -> NoReturn:
        raise file.error(
            f"{file.path} could not be read as a {file.kind} ({why}). The file is empty, truncated, corrupt, or "
            f"contains objects that cannot be loaded safely (weights_only=True accepts only tensors and plain values). {file.fix}"
        )

    size = file.path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        file.fail(f"it has {size:,} bytes, more than the {MAX_CHECKPOINT_BYTES:,} a torch file may have")
    try:
        with zipfile.ZipFile(file.path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        unreadable(f"not a complete zip archive, the format torch.save writes: {err}")
    if unpacked > MAX_CHECKPOINT_BYTES:
        file.fail(f"it unpacks to {unpacked:,} bytes, more than the {MAX_CHECKPOINT_BYTES:,} a torch file may have")
    try:
        return torch.load(file.path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        unreadable(f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}")


def check_finite(weights: Mapping[str, torch.Tensor], file: UntrustedFile, what: str = "weights") -> None:
    """Every floating-point tensor of ``weights`` is finite: non-finite weights (a diverged run) start no analysis or training.

    Raises:
        LandscapeError: ``file``'s error naming the first tensor with a NaN or an infinity.
    """
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            file.fail(f"its {what} hold non-finite values (NaN or infinity) in {name!r}, as a diverged run leaves; "
                      "no analysis or training can start from them")


def _from_raw(raw: dict[str, Any], file: UntrustedFile) -> Checkpoint:
    """The :class:`Checkpoint` of a loaded dict, each field checked for presence, type and range."""
    from fedtrain.config import DATASETS, MODEL_NAMES

    model = file.field(raw, "model", mapping_rule())
    swa = file.field(raw, "swa", optional(mapping_rule()), default=None)
    data = file.field(raw, "data", mapping_rule())
    state = file.field(raw, "state", optional(mapping_rule()), default=None) or {}
    config = file.field(raw, "config", optional(mapping_rule()), default=None) or {}
    for key, value in config.items():  # the run's settings are read back (resume, info): TrainConfig's rules
        if (problem := setting_problem(key, value)) is not None:
            file.fail(f"its training configuration is refused: {problem}")
    file.field(state, "server_momentum", optional(_STATE_DICT), "state ", default=None)
    file.field(state, "metrics", list_of(mapping_rule()), "state ", default=[])
    file.field(state, "elapsed_seconds", number(low=0), "state ", default=0.0)
    method_state = file.field(state, "method_state", _METHOD_STATE, "state ", default={})
    client_states = file.field(state, "client_states", _CLIENT_STATES, "state ", default={})
    check_finite(_state_tensors(method_state), file, "method's server state")
    check_finite(_state_tensors(client_states), file, "method's client states")
    return Checkpoint(
        model_name=file.field(model, "name", text(MODEL_NAMES), "model "),
        model_kwargs=dict(file.field(model, "kwargs", mapping_rule(), "model ")),
        weights=dict(file.field(raw, "weights", _STATE_DICT)),
        dataset=file.field(data, "dataset", text(DATASETS), "data "),
        data_dir=file.field(data, "data_dir", optional(text()), "data ", default=None),
        swa_weights=None if swa is None else dict(file.field(swa, "weights", _STATE_DICT, "swa ")),
        swa_count=0 if swa is None else file.field(swa, "count", integer(0), "swa "),
        partition=file.field(raw, "partition", optional(mapping_rule()), default=None),
        config=dict(config),
        round=file.field(raw, "round", integer(0), default=0),
        state=dict(state),
        versions=dict(file.field(raw, "versions", optional(mapping_rule()), default=None) or {}),
        path=file.path,
    )


def _declared_model(checkpoint: Checkpoint, file: UntrustedFile) -> dict[str, torch.Tensor]:
    """The state dict of the model the checkpoint declares, built on the meta device (shapes and dtypes, no memory)."""
    from fedtrain.data import dataset_signature

    kwargs = checkpoint.model_kwargs
    shape = tuple(file.field(kwargs, "input_shape", list_of(integer(1), 3), "model kwargs "))
    classes = file.field(kwargs, "num_classes", integer(1), "model kwargs ")
    expected_shape, expected_classes = dataset_signature(checkpoint.dataset)
    if (shape, classes) != (expected_shape, expected_classes):
        file.fail(f"its model takes inputs of shape {list(shape)} with {classes} classes, but its dataset "
                  f"{checkpoint.dataset!r} has {list(expected_shape)} with {expected_classes}; the model does not fit the data")
    try:
        layout = declared_state_dict(checkpoint.model_name, kwargs)
    except ConfigError as err:
        file.fail(f"its model cannot be built ({err})")
    values = sum(t.numel() for t in layout.values())
    if values > MAX_MODEL_VALUES:
        file.fail(f"its model {checkpoint.model_name!r} with kwargs {shown_value(kwargs)} declares {values:,} values, more than "
                  f"the {MAX_MODEL_VALUES:,} (fedtrain.validate.MAX_MODEL_VALUES) a model may have")
    return layout


def _check_weights(checkpoint: Checkpoint, file: UntrustedFile) -> None:
    """Every state dict of the checkpoint has the declared model's names and shapes, and finite floating values."""
    layout = _declared_model(checkpoint, file)
    momentum = checkpoint.state.get("server_momentum")
    for what, weights in (("weights", checkpoint.weights), ("SWA weights", checkpoint.swa_weights),
                          ("server momentum", momentum)):
        if weights is None:
            continue
        # the momentum buffer holds one entry per floating-point tensor of the model (integer buffers have none)
        names = set(weights) if what == "server momentum" else set(layout)
        if set(weights) != names or not names <= set(layout):
            missing, extra = sorted(names - set(weights)), sorted(set(weights) - set(layout))
            raise CheckpointError(
                f"The {what} in {file.path} do not fit model {checkpoint.model_name!r} with {shown_value(checkpoint.model_kwargs)}: "
                f"{'missing ' + ', '.join(missing[:5]) if missing else ''}{'; ' if missing and extra else ''}"
                f"{'unexpected ' + ', '.join(extra[:5]) if extra else ''}. {_FIX}"
            )
        for name, tensor in weights.items():
            if tuple(tensor.shape) != tuple(layout[name].shape):
                raise CheckpointError(
                    f"The {what} in {file.path} do not fit model {checkpoint.model_name!r} with {shown_value(checkpoint.model_kwargs)}: "
                    f"{name!r} has shape {list(tensor.shape)}, the model's is {list(layout[name].shape)}. {_FIX}"
                )
            if tensor.is_floating_point() != layout[name].is_floating_point():
                file.fail(f"its {what} {name!r} are of type {tensor.dtype}, the model's are {layout[name].dtype}")
        check_finite(weights, file, what)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (recorded in analysis outputs to tie them to a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
