"""Evaluating a model's loss and accuracy at many parameter points per pass over in-memory data.

The engine behind loss surfaces: for each data batch, every parameter set of a chunk is evaluated
through ``torch.func.functional_call`` on a private eval-mode copy of the model (a Python loop over
the points, or ``torch.func.vmap`` over stacked parameters), and per-sample cross-entropy losses and
0/1 correctness are reduced in float64 to a mean and a standard error per point. The caller's model
(weights, buffers, ``.grad``, ``requires_grad``, train/eval mode) is never touched.

Everything lives on one device: the model copy, its buffers, the running sums; the data and the
parameter sets are expected there (they are moved once if not). Nothing inside the batch loop waits for
the device; the statistics of a pass come to the host in one transfer. On a GPU the evaluation runs in
full float32 (:func:`fedtrain.device.ieee_float32`: no TF32), so a surface agrees with the CPU's to float32
rounding.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from fedtrain.batchnorm import cumulative_statistics, has_batchnorm, reset_statistics
from fedtrain.device import ieee_float32
from fedtrain.errors import ConfigError
from landscape.settings import BN_MODES, EVALUATION_METHODS

__all__ = ["PointStats", "Evaluator", "point_stats"]

BnMode = Literal["eval", "recalibrate"]
Method = Literal["loop", "vmap"]


@dataclass(frozen=True)
class PointStats:
    """Mean and standard error of the loss and of the accuracy (in percent) at each of P points.

    The standard error of a mean over N samples is ``sqrt(s^2 / N)`` with ``s^2`` the unbiased
    sample variance of the per-sample values (cross-entropy losses, or 100 x 0/1 correctness).
    """

    loss: np.ndarray
    loss_stderr: np.ndarray
    acc: np.ndarray
    acc_stderr: np.ndarray
    num_examples: int


class _Moments:
    """Running count, float64 sum and sum of squared deviations per point (Chan et al.'s parallel update).

    The mean is the float64 sum divided by N, so one batch covering all samples gives exactly
    ``losses.double().sum() / N``; the squared deviations are combined batch by batch, which stays
    accurate when the variance is small compared with the mean.
    """

    def __init__(self, num_points: int, device: torch.device) -> None:
        self.count = 0  # a Python int: the batch sizes are known on the host, so no update waits for the device
        self.total = torch.zeros(num_points, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(num_points, dtype=torch.float64, device=device)

    def update(self, values: Tensor) -> None:
        """Add a ``(P, B)`` block of per-sample values."""
        values = values.to(torch.float64)
        batch = values.shape[1]
        batch_total = values.sum(dim=1)
        batch_mean = batch_total / batch
        batch_m2 = ((values - batch_mean[:, None]) ** 2).sum(dim=1)
        if self.count:
            delta = batch_mean - self.total / self.count
            self.m2 += batch_m2 + delta**2 * (self.count * batch / (self.count + batch))
        else:
            self.m2 += batch_m2
        self.total += batch_total
        self.count += batch

    def mean_and_stderr(self) -> tuple[Tensor, Tensor]:
        """Per-point mean and standard error (NaN for a single sample), on the device of the sums."""
        mean = self.total / self.count
        if self.count < 2:
            return mean, torch.full_like(mean, float("nan"))
        return mean, (self.m2 / (self.count - 1) / self.count).sqrt()


class Evaluator:
    """Evaluates parameter sets of one architecture on in-memory data, in chunks of points per data pass.

    Holds an eval-mode deep copy of the model on ``device`` (only its structure is used; parameters
    and buffers always come from the dicts passed in) and the model's buffers at construction time.

    Args:
        model: the architecture (and, for ``bn="eval"``, the frozen BatchNorm statistics). Not modified.
        batch_size: samples per forward pass. On this 2-core CPU batches of 64 were fastest (bench/bench_surface.py).
        method: ``"loop"`` (one ``functional_call`` per point per batch) or ``"vmap"`` (all points of
            a chunk in one vectorised call over stacked parameters).
        bn: ``"eval"``: frozen running statistics of ``model``; ``"recalibrate"``: running statistics
            recomputed at every point from ``recalibration_inputs`` (cumulative average over them,
            as ``torch.optim.swa_utils.update_bn`` does).
        recalibration_inputs: inputs for ``bn="recalibrate"`` (normally training data); moved to ``device`` once.
        device: where the model copy, its buffers, the data and the sums live.

    Raises:
        ConfigError: bad batch size, method or BN mode, or recalibration without data.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        batch_size: int = 64,
        method: Method = "loop",
        bn: BnMode = "eval",
        recalibration_inputs: Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        if method not in EVALUATION_METHODS:
            raise ConfigError(f"method must be one of {', '.join(EVALUATION_METHODS)}, got {method!r}.")
        if bn not in BN_MODES:
            raise ConfigError(f"bn must be one of {', '.join(BN_MODES)}, got {bn!r}.")
        if bn == "recalibrate" and recalibration_inputs is None:
            raise ConfigError("bn='recalibrate' needs recalibration_inputs (training inputs to recompute BatchNorm statistics).")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.method = method
        self.bn = bn
        self.recalibration_inputs = None if recalibration_inputs is None else recalibration_inputs.to(self.device)
        self._module = copy.deepcopy(model).to(self.device).eval()
        self._module.requires_grad_(False)
        self._buffers = {name: b.detach().to(self.device, copy=True) for name, b in model.named_buffers()}
        self._recalibrating = bn == "recalibrate" and has_batchnorm(model)
        if self._recalibrating:
            self._train_module = copy.deepcopy(self._module).train()

    def buffers_for(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The buffers used at ``params``: the frozen ones, or BatchNorm statistics recomputed there."""
        if not self._recalibrating:
            return self._buffers
        fresh = reset_statistics(self._buffers)
        inputs = self.recalibration_inputs
        with torch.no_grad(), cumulative_statistics(self._train_module):
            for start in range(0, inputs.shape[0], self.batch_size):
                # functional_call writes BatchNorm's in-place statistic updates into ``fresh``.
                functional_call(self._train_module, {**params, **fresh}, (inputs[start : start + self.batch_size],))
        return fresh

    def _forward(self, params: Sequence[Mapping[str, Tensor]], buffers: Sequence[Mapping[str, Tensor]]) -> Callable[[Tensor], Tensor]:
        """``x -> (P, B, C)`` logits of every point; vmap's stacked parameters are built once per pass, not per batch."""
        if self.method == "loop" or len(params) == 1:
            merged = [{**p, **b} for p, b in zip(params, buffers)]
            return lambda x: torch.stack([functional_call(self._module, m, (x,)) for m in merged])
        stacked_params = {name: torch.stack([p[name] for p in params]) for name in params[0]}
        if buffers[0] is self._buffers:  # shared frozen buffers: not batched
            return lambda x: vmap(lambda p: functional_call(self._module, {**p, **self._buffers}, (x,)))(stacked_params)
        stacked_buffers = {name: torch.stack([b[name] for b in buffers]) for name in buffers[0]}
        return lambda x: vmap(lambda p, b: functional_call(self._module, {**p, **b}, (x,)))(stacked_params, stacked_buffers)

    def statistics(self, params: Sequence[Mapping[str, Tensor]], inputs: Tensor, labels: Tensor) -> Tensor:
        """Loss mean, loss standard error, accuracy mean and accuracy standard error of every point, on the device.

        One pass over the data, in batches of ``batch_size``; nothing waits for the device, so a
        caller can queue several passes before bringing their results to the host at once.

        Args:
            params: P parameter dicts (names as in ``model.named_parameters()``), on the device.
            inputs: ``(N, ...)`` float inputs, already normalised (moved to the device if elsewhere).
            labels: ``(N,)`` int64 class labels.

        Returns:
            A float64 ``(4, P)`` tensor on the device: rows loss, loss stderr, accuracy, accuracy stderr.

        Raises:
            ConfigError: empty data or mismatched inputs and labels.
        """
        if inputs.shape[0] == 0 or inputs.shape[0] != labels.shape[0]:
            raise ConfigError(f"Need as many inputs as labels and at least one; got {inputs.shape[0]} and {labels.shape[0]}.")
        inputs, labels = inputs.to(self.device), labels.to(self.device)
        params = list(params)
        losses, correct = _Moments(len(params), self.device), _Moments(len(params), self.device)
        with torch.no_grad(), ieee_float32(self.device):
            forward = self._forward(params, [self.buffers_for(p) for p in params])
            for start in range(0, inputs.shape[0], self.batch_size):
                x, y = inputs[start : start + self.batch_size], labels[start : start + self.batch_size]
                logits = forward(x)  # (P, B, C)
                per_sample = nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), y.repeat(len(params)), reduction="none"
                ).reshape(len(params), -1)
                losses.update(per_sample)
                correct.update((logits.argmax(dim=-1) == y).to(torch.float64) * 100.0)
        return torch.stack([*losses.mean_and_stderr(), *correct.mean_and_stderr()])

    def evaluate(self, params: Sequence[Mapping[str, Tensor]], inputs: Tensor, labels: Tensor) -> PointStats:
        """Loss and accuracy of every parameter set on ``(inputs, labels)``, in one pass over the data.

        Args:
            params: P parameter dicts (names as in ``model.named_parameters()``), on the device.
            inputs: ``(N, ...)`` float inputs, already normalised (moved to the device if elsewhere).
            labels: ``(N,)`` int64 class labels.

        Returns:
            Per-point means and standard errors. For each point the batches are visited in the same
            order with the same sizes whatever the chunk, so results do not depend on P for ``loop``.

        Raises:
            ConfigError: empty data or mismatched inputs and labels.
        """
        return point_stats(self.statistics(params, inputs, labels).cpu().numpy(), int(inputs.shape[0]))


def point_stats(rows: np.ndarray, num_examples: int) -> PointStats:
    """The :class:`PointStats` of the ``(4, P)`` rows of :meth:`Evaluator.statistics`, brought to the host."""
    return PointStats(rows[0], rows[1], rows[2], rows[3], num_examples)
