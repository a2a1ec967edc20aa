"""An operator that reports every Hessian-vector product it makes to a callback (progress of long analyses)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fedtrain.progress import Progress, ProgressCallback, report
from landscape.hessian.operator import LinearOperator

__all__ = ["CountedOperator", "ProductPlan"]


class CountedOperator:
    """``operator`` unchanged, except that it counts its products and calls ``on_products(count)`` after each call.

    ``matvec`` is one product and ``matmat`` of ``(dim, k)`` is ``k`` products, the unit in which every
    estimator of :mod:`landscape.hessian` states its budget (``num_matvecs``). The wrapped operator computes
    exactly as before (same calls, same order), so results are bit-identical with or without counting.

    Args:
        operator: any :class:`~landscape.hessian.operator.LinearOperator`.
        on_products: called with the running total after each ``matvec``/``matmat``.
    """

    def __init__(self, operator: LinearOperator, on_products: Callable[[int], None]) -> None:
        self.operator = operator
        self.dim: int = operator.dim
        self.device: torch.device = operator.device
        self.on_products = on_products
        self.count = 0

    def matvec(self, vector: Tensor) -> Tensor:
        """``H v``: one product."""
        out = self.operator.matvec(vector)
        self._add(1)
        return out

    def matmat(self, matrix: Tensor) -> Tensor:
        """``H V``: ``V.shape[1]`` products."""
        out = self.operator.matmat(matrix)
        self._add(int(matrix.shape[1]))
        return out

    def _add(self, products: int) -> None:
        self.count += products
        self.on_products(self.count)


class ProductPlan:
    """The planned products of an analysis, component by component, reported as one ``"hessian"`` stage.

    ``planned`` maps each component (``"eigenvalues"``, ``"trace"``, ``"density"``) to its budget. Events
    count products done over all components; when a component ends with fewer products than planned (an
    eigensolver that converged early), the plan shrinks to what it used, so the last event has
    ``done == total``.

    Args:
        planned: products planned per component, in the order they run.
        progress: the callback (``None``: nobody listens).
        hint: which settings shorten the analysis (shown with the cost estimate).
    """

    def __init__(self, planned: dict[str, int], progress: ProgressCallback | None, hint: str = "") -> None:
        self.planned = dict(planned)
        self.used: dict[str, int] = {}
        self.progress = progress
        self.hint = hint
        self._last: tuple[int, int] | None = None

    def counted(self, operator: LinearOperator, component: str) -> LinearOperator:
        """``operator`` reporting the products of ``component`` (the operator itself when nobody listens)."""
        if self.progress is None:
            return operator
        self._report(component, 0)
        return CountedOperator(operator, lambda count: self._report(component, count))  # type: ignore[return-value]

    def finish(self, component: str, used: int) -> None:
        """``component`` is done after ``used`` products."""
        self.used[component] = int(used)
        self._report(component, int(used))

    def _report(self, component: str, count: int) -> None:
        done = sum(self.used.values()) + (0 if component in self.used else count)
        total = sum(self.used.get(name, max(budget, count) if name == component else budget)
                    for name, budget in self.planned.items())
        if (done, total) != self._last:  # a component ending exactly on its budget was reported already
            self._last = (done, total)
            report(self.progress, Progress("hessian", done, total, "products", detail=component, hint=self.hint))
