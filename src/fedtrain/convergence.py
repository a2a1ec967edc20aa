"""Whether a run's test accuracy had stopped rising: the least-squares slope over its last evaluations, as a record.

A comparison of final accuracies is only a comparison of methods if both runs had converged: a run still
climbing at the end measures the budget, not the method (FedSAM near chance for its first 30 rounds of an
80-round run, then rising, is the case that motivated this check). The check fits a straight line to the
evaluations (round, test accuracy in points) that fall in the last ``window`` fraction of the rounds and
extrapolates it over that window:

.. math::

    \\hat\\beta = \\frac{\\sum_i (r_i - \\bar r)(a_i - \\bar a)}{\\sum_i (r_i - \\bar r)^2}, \\qquad
    \\text{gain} = \\hat\\beta \\, w R, \\qquad
    \\mathrm{se}(\\text{gain}) = w R \\sqrt{\\frac{\\sum_i (a_i - \\hat a_i)^2 / (n - 2)}{\\sum_i (r_i - \\bar r)^2}},

with ``R`` the run's rounds and ``w`` the window fraction (ordinary least squares; the standard error is the
textbook one of the slope, e.g. Wasserman, *All of Statistics*, 13.2). The run has converged when the gain is
below ``threshold`` points.

What is fitted is what was evaluated: a run with server-side SWA evaluates the SWA average from the SWA start
on (``metrics.jsonl``'s ``model``), so its curve there is the averaged model's, which moves more slowly than the
global model's; with the default window (last 20 %) and SWA start (75 %) the whole window is the SWA model's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT_WINDOW", "DEFAULT_THRESHOLD", "Convergence", "convergence_of"]

DEFAULT_WINDOW = 0.2
# Two points over the last fifth of training: the differences the paper reports between FedAvg and
# FedSAM/FedASAM on its heterogeneous splits are a few points (e.g. CIFAR-10 alpha 0: 1-5 points), and the
# spread of one run's final accuracy over seeds is about one point; a run that would still gain two points
# in another window of the same length carries a budget effect as large as the effects being compared, while
# a smaller gain is within the seed spread. The evaluation noise of one accuracy (about 0.5 points on 10,000
# test images) hardly moves a fit over several evaluations.
DEFAULT_THRESHOLD = 2.0


@dataclass(frozen=True)
class Convergence:
    """The convergence check of one run.

    Attributes:
        window: the fraction of the run's rounds fitted (the last ones).
        rounds: ``(first, last)`` round (rounds done, 1-based) of the evaluations fitted.
        evaluations: how many evaluations the window holds.
        slope_per_round: the fitted slope of test accuracy, in points per round (``None`` below 2 evaluations).
        gain: ``slope_per_round`` times the window's length in rounds, in points (``None`` below 2 evaluations).
        gain_stderr: the standard error of ``gain`` from the fit's residuals (``None`` below 3 evaluations).
        threshold: the gain, in points, at and above which the run has not converged.
        converged: ``gain < threshold``; ``None`` when the window holds fewer than 2 evaluations (cannot tell).
    """

    window: float
    rounds: tuple[int, int] | None
    evaluations: int
    slope_per_round: float | None
    gain: float | None
    gain_stderr: float | None
    threshold: float
    converged: bool | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict, the ``convergence`` record of ``summary.json``."""
        record = asdict(self)
        record["rounds"] = None if self.rounds is None else list(self.rounds)
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Convergence:
        """The record back from :meth:`to_dict` (``from_dict(c.to_dict()) == c``)."""
        rounds = record.get("rounds")
        return cls(window=float(record["window"]), rounds=None if rounds is None else (int(rounds[0]), int(rounds[1])),
                   evaluations=int(record["evaluations"]), slope_per_round=_optional(record.get("slope_per_round")),
                   gain=_optional(record.get("gain")), gain_stderr=_optional(record.get("gain_stderr")),
                   threshold=float(record["threshold"]),
                   converged=None if record.get("converged") is None else bool(record["converged"]))

    def describe(self) -> str:
        """One phrase for a reader, e.g. ``+4.1 ± 0.8 points over the last 20% of rounds``."""
        if self.gain is None:
            return f"{self.evaluations} evaluation(s) in the last {self.window:.0%} of rounds: too few to fit a slope"
        spread = "" if self.gain_stderr is None else f" ± {self.gain_stderr:.1f}"
        return f"{self.gain:+.1f}{spread} points over the last {self.window:.0%} of rounds"


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def convergence_of(metrics: Iterable[Mapping[str, Any]], rounds: int | None = None, *, window: float = DEFAULT_WINDOW,
                   threshold: float = DEFAULT_THRESHOLD) -> Convergence:
    """The convergence check of a run from its evaluations (``metrics.jsonl`` rows with ``round`` and ``test_accuracy``).

    Args:
        metrics: the run's evaluation rows; ``test_accuracy`` is a fraction (shown in points, x100); rows without
            an accuracy are skipped.
        rounds: the run's length in rounds (``TrainConfig.rounds``); the last evaluated round when ``None``.
        window: the fraction of the rounds, at the end, whose evaluations are fitted, in (0, 1].
        threshold: the gain in points at and above which the run has not converged (> 0).

    Returns:
        The :class:`Convergence` record.

    Raises:
        ValueError: ``window`` outside (0, 1], ``threshold`` not positive, or ``rounds`` below 1.
    """
    if not 0.0 < window <= 1.0:
        raise ValueError(f"window must be a fraction in (0, 1]. Got {window}.")
    if not threshold > 0.0:
        raise ValueError(f"threshold must be a positive number of accuracy points. Got {threshold}.")
    points = sorted((int(m["round"]), 100.0 * float(m["test_accuracy"])) for m in metrics
                    if m.get("test_accuracy") is not None and math.isfinite(float(m["test_accuracy"])))
    total = rounds if rounds is not None else (points[-1][0] if points else 1)
    if total < 1:
        raise ValueError(f"rounds must be at least 1. Got {total}.")
    length = window * total
    fitted = [(r, a) for r, a in points if r >= total - length - 1e-9]
    span = (fitted[0][0], fitted[-1][0]) if fitted else None
    slope, slope_stderr = _line_slope(fitted)
    gain = None if slope is None else slope * length
    return Convergence(window=window, rounds=span, evaluations=len(fitted), slope_per_round=slope, gain=gain,
                       gain_stderr=None if slope_stderr is None else slope_stderr * length, threshold=threshold,
                       converged=None if gain is None else gain < threshold)


def _line_slope(points: list[tuple[int, float]]) -> tuple[float | None, float | None]:
    """The least-squares slope of ``points`` and its standard error (``None`` where undefined)."""
    n = len(points)
    if n < 2:
        return None, None
    mean_r = sum(r for r, _ in points) / n
    mean_a = sum(a for _, a in points) / n
    sxx = sum((r - mean_r) ** 2 for r, _ in points)
    if sxx == 0.0:
        return None, None
    slope = sum((r - mean_r) * (a - mean_a) for r, a in points) / sxx
    if n < 3:
        return slope, None
    residual = sum((a - mean_a - slope * (r - mean_r)) ** 2 for r, a in points)
    return slope, math.sqrt(residual / (n - 2) / sxx)
