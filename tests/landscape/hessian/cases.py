"""Case table for the Hessian engine tests (curvlinops style): small float64 models with data, and quadratics.

Each model case gives a factory for the model, the loss and the data batches (deliberately of
unequal sizes, so count weighting is exercised); the dense Hessian from
:func:`landscape.hessian.exact.dense_hessian` is the oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from landscape.hessian.analysis import cross_entropy
from landscape.hessian.operator import HessianOperator

Batch = tuple[Tensor, Tensor]


class TinyCNN(nn.Module):
    """conv 3x3 -> ReLU -> maxpool 2 -> linear: the layer types of the paper's CNN, 47 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


class WithUnusedParameter(nn.Module):
    """An MLP whose ``unused`` layer never enters the forward pass (its Hessian rows are zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(16, 4)
        self.out = nn.Linear(4, 3)
        self.unused = nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.hidden(x.flatten(1))))


@dataclass(frozen=True)
class ModelCase:
    name: str
    model_fn: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int = 3
    batch_sizes: tuple[int, ...] = (7, 5)
    seed: int = 0

    def model(self) -> nn.Module:
        torch.manual_seed(self.seed)  # only inside tests; the library never touches the global RNG
        return self.model_fn().double()

    def batches(self) -> list[Batch]:
        generator = torch.Generator().manual_seed(self.seed + 1)
        out = []
        for size in self.batch_sizes:
            x = torch.randn(size, *self.input_shape, generator=generator, dtype=torch.float64)
            y = torch.randint(0, self.num_classes, (size,), generator=generator)
            out.append((x, y))
        return out

    def operator(self, **kwargs: object) -> HessianOperator:
        return HessianOperator(self.model(), cross_entropy, self.batches(), **kwargs)


def _mlp() -> nn.Module:
    from fedtrain.models import build_model

    return build_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=(5,))


MODEL_CASES = [
    ModelCase("mlp", _mlp, (1, 4, 4)),
    ModelCase("tiny-cnn", TinyCNN, (1, 6, 6)),
    ModelCase("unused-parameter", WithUnusedParameter, (1, 4, 4)),
]
MODEL_IDS = [case.name for case in MODEL_CASES]


def symmetric_with_spectrum(eigenvalues: list[float] | Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A dense symmetric matrix ``U diag(lambda) U^T`` with a random orthogonal ``U``; returns (matrix, sorted eigenvalues)."""
    values = torch.as_tensor(eigenvalues, dtype=torch.float64)
    n = values.numel()
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return basis @ torch.diag(values) @ basis.T, values.sort(descending=True).values


def _bulk(n: int, low: float, high: float) -> list[float]:
    return torch.linspace(low, high, n, dtype=torch.float64).tolist()


QUADRATIC_SPECTRA = {
    # Hessian-like: a few outliers above a bulk around zero, with negative eigenvalues
    "outliers": [9.0, 6.5, 4.0, 3.2, 2.5] + _bulk(115, -0.3, 0.6),
    # the top eigenvalue repeated three times
    "repeated-top": [5.0, 5.0, 5.0, 3.0, 2.0] + _bulk(95, -1.0, 1.5),
    # a tight cluster at the top (gaps of 1e-6 relative)
    "tight-cluster": [10.0, 10.0 - 1e-5, 10.0 - 2e-5, 10.0 - 3e-5, 7.0] + _bulk(75, -1.0, 2.0),
}
QUADRATIC_IDS = list(QUADRATIC_SPECTRA)


@pytest.fixture(autouse=True, scope="module")
def single_threaded():
    """Run the tiny models of these tests on one intra-op thread (restored afterwards).

    With two threads on a shared, loaded machine, each tiny conv waits on thread synchronisation
    (~30 ms instead of ~0.2 ms); one thread makes the suite ~10x faster and changes no result.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
