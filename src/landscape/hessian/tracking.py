"""Sharpness during training: lambda_max (optionally the trace) of the global model every few rounds, by warm-started Lanczos.

:class:`SharpnessTracker` is a :class:`fedtrain.observers.RoundObserver`: ``landscape train
--track-sharpness EVERY`` passes one to :func:`fedtrain.run.train`, which merges its numbers into the
round's metrics record (``sharpness_lambda_max``, ``sharpness_products``, ``sharpness_seconds``, ...).

Each check builds the Hessian of the mean cross-entropy of the global weights on a fixed seeded subset
(:func:`fedtrain.data.evaluation_tensors`, BatchNorm in eval mode) and runs
:func:`~landscape.hessian.lanczos.top_eigenpairs` for one pair, started from the previous check's top
eigenvector (``v0``): between two checks a few rounds apart the top eigenvector moves little, so the
first Krylov vector already holds most of it (Cohen et al., ICLR 2021, track lambda_max this way against
the stability threshold ``2 / lr`` of gradient descent, the "edge of stability").

**Resume.** The previous eigenvector is the tracker's state: it is saved in every checkpoint
(``state["observers"]["sharpness"]["vector"]``, float64 on the CPU) and restored on resume, so a
resumed run measures exactly what the uninterrupted run measured (same start vectors, same numbers).
A run resumed from a checkpoint that holds no vector starts the next check cold (a random start).

**Cost.** A check costs its products (``sharpness_products``, each one pass over the subset, plus the
first-order graph built once per check) and the determinism check is skipped: the model is the run's
own, in eval mode, and a non-finite model stops the run before it is observed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fedtrain.config import TrainConfig
from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.device import resolve_device, synchronize
from fedtrain.models import build_model
from fedtrain.server import StateDict
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.lanczos import top_eigenpairs
from landscape.hessian.operator import HessianOperator, split_batches
from landscape.hessian.trace import trace_hutchpp
from landscape.settings import TrackingSettings, settings_from_dict

__all__ = ["SharpnessTracker", "TRACKER_NAME"]

TRACKER_NAME = "sharpness"


class SharpnessTracker:
    """lambda_max of the global model every ``settings.every`` rounds on a fixed subset, warm-started.

    Args:
        model: a module of the run's architecture (its weights are replaced at every check; never the run's own).
        inputs, labels: the fixed subset (normalised, never augmented), on ``device``.
        settings: what to measure and how.
        device: where the products run.
    """

    name = TRACKER_NAME

    def __init__(self, model: nn.Module, inputs: Tensor, labels: Tensor, settings: TrackingSettings,
                 device: torch.device) -> None:
        self.model = model.to(device)
        self.batches = split_batches(inputs.to(device), labels.to(device), settings.batch_size)
        self.record = settings
        self.every = settings.every
        self.device = device
        self.vector: Tensor | None = None  # the previous check's top eigenvector (CPU float64)

    @classmethod
    def for_run(cls, config: TrainConfig, settings: TrackingSettings | None = None) -> SharpnessTracker:
        """The tracker of a run: its model architecture, dataset and device; settings from ``config.observers``.

        Raises:
            ConfigError: settings that are not valid, or ``config`` records none and none are given.
            DataNotFoundError: the run's dataset is not found.
        """
        if settings is None:
            settings = settings_from_dict(TrackingSettings, config.observers.get(TRACKER_NAME, {}))
        device = resolve_device(config.device)
        dataset = load_dataset(config.dataset, config.data_dir)
        inputs, labels = evaluation_tensors(dataset, settings.split, settings.num_examples, settings.seed)
        model_kwargs = {"input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes, **config.model_kwargs}
        return cls(build_model(config.model, seed=0, **model_kwargs), inputs, labels, settings, device)

    def settings(self) -> dict[str, Any]:
        """The tracking settings (``TrainConfig.observers["sharpness"]``)."""
        return self.record.to_dict()

    def observe(self, round: int, params: StateDict) -> dict[str, Any]:
        """lambda_max (and the trace) of ``params`` on the subset, with the products and seconds it took.

        Returns:
            ``lambda_max``, ``converged``, ``products``, ``seconds``, ``warm_start`` (whether a previous vector
            started it) and, with ``trace``, ``trace``, ``trace_stderr`` and ``trace_products``.
        """
        start = time.perf_counter()
        self.model.load_state_dict(params)
        operator = HessianOperator(self.model, cross_entropy, self.batches, device=self.device, check_deterministic=False)
        warm = self.record.warm_start and self.vector is not None
        pairs = top_eigenpairs(operator, 1, tol=self.record.tol, max_matvecs=self.record.max_matvecs,
                               generator=torch.Generator().manual_seed(self.record.seed),
                               v0=self.vector if warm else None, verify=self.record.verify)
        self.vector = pairs.vectors[:, 0].detach().to("cpu", torch.float64)
        out: dict[str, Any] = {"lambda_max": float(pairs.values[0]), "converged": bool(pairs.converged[0]),
                               "products": pairs.num_matvecs, "warm_start": warm}
        if self.record.trace:
            estimate = trace_hutchpp(operator, self.record.trace_matvecs,
                                     generator=torch.Generator().manual_seed(self.record.seed + 1))
            out.update(trace=estimate.estimate, trace_stderr=estimate.stderr, trace_products=estimate.num_matvecs)
        synchronize(self.device)
        out["seconds"] = time.perf_counter() - start
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{"vector": previous top eigenvector or None}``."""
        return {"vector": self.vector}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved previous eigenvector."""
        vector = state.get("vector")
        self.vector = None if vector is None else vector.detach().to("cpu", torch.float64)
