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
versions           library versions that wrote the file
=================  ==========================================================================
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from fedtrain.errors import CheckpointError
from fedtrain.io import atomic_write_bytes, to_plain
from fedtrain.models import build_model

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
    "library_versions",
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
    """Read a checkpoint with ``weights_only=True``, its tensors on ``map_location`` (the CPU by default).

    Raises:
        CheckpointError: the file is missing, truncated, not a torch file, or not one of ours.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"No checkpoint at {file}: the file does not exist. Check the path.")
    try:
        raw = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(
            f"{file} could not be read as a checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            "The file is truncated, corrupt, or contains objects that cannot be loaded safely "
            "(only tensors and plain values are accepted). Use a checkpoint written by `landscape train`."
        ) from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is not a fedlandscape checkpoint (it lacks the format marker {FORMAT!r}); it may be a bare "
            "state dict from another tool. Write checkpoints with `landscape train`, or wrap a state dict with "
            "fedtrain.checkpoint.Checkpoint(model_name=..., model_kwargs=..., weights=..., dataset=...)."
        )
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format version {raw.get('format_version')}, this fedlandscape reads version "
            f"{FORMAT_VERSION}. Use the fedlandscape version that wrote it."
        )
    try:
        swa = raw.get("swa")
        return Checkpoint(
            model_name=raw["model"]["name"],
            model_kwargs=dict(raw["model"]["kwargs"]),
            weights=dict(raw["weights"]),
            dataset=raw["data"]["dataset"],
            data_dir=raw["data"].get("data_dir"),
            swa_weights=None if swa is None else dict(swa["weights"]),
            swa_count=0 if swa is None else int(swa["count"]),
            partition=raw.get("partition"),
            config=dict(raw.get("config") or {}),
            round=int(raw.get("round", 0)),
            state=dict(raw.get("state") or {}),
            versions=dict(raw.get("versions") or {}),
            path=file,
        )
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{file} is a damaged fedlandscape checkpoint: missing field {err}.") from err


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (recorded in analysis outputs to tie them to a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
