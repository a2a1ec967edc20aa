"""A 2-input, 2-class linear model in float64 with one batch of three samples, and its cross-entropy gradient by hand."""

from __future__ import annotations

import math

import torch
from torch import nn

from fedtrain.client import ClientConfig, ClientShard
from fedtrain.methods import ClientContext

# three samples, 1x1x2 uint8 images (normalised to x / 10), labels
PIXELS = [[3, 1], [0, 2], [4, 4]]
LABELS = [0, 1, 1]
W0 = [[0.3, -0.2], [0.1, 0.4]]
B0 = [0.05, -0.1]


def worker() -> nn.Module:
    """``Flatten -> Linear(2, 2)`` in float64 (state-dict names ``1.weight``, ``1.bias``)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2)).to(torch.float64)
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(W0, dtype=torch.float64))
        model[1].bias.copy_(torch.tensor(B0, dtype=torch.float64))
    return model


def global_params() -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in worker().state_dict().items()}


def shard() -> ClientShard:
    images = torch.tensor(PIXELS, dtype=torch.uint8).reshape(3, 1, 1, 2)
    return ClientShard(images, torch.tensor(LABELS), lambda u: u.to(torch.float64) / 10.0)


def context(*, lr: float, rho: float, weight_decay: float, server_state: dict, round: int = 0) -> ClientContext:
    """One local step: one epoch of one full batch of the three samples, local SAM."""
    cfg = ClientConfig(lr=lr, local_epochs=1, batch_size=3, weight_decay=weight_decay, momentum=0.0, optimizer="sam", rho=rho)
    return ClientContext(round=round, client=0, config=cfg, generator=torch.Generator().manual_seed(0), worker=worker(),
                         server_state=server_state)


def ce_gradient(W: list[list[float]], b: list[float]) -> tuple[list[list[float]], list[float]]:
    """Mean cross-entropy gradient over the batch: dz = softmax(Wx + b) - onehot(y); dW = mean dz x^T, db = mean dz."""
    gW, gb = [[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0]
    for pixels, y in zip(PIXELS, LABELS):
        x = [p / 10.0 for p in pixels]
        z = [W[r][0] * x[0] + W[r][1] * x[1] + b[r] for r in range(2)]
        e = [math.exp(v - max(z)) for v in z]
        dz = [e[r] / sum(e) - (1.0 if r == y else 0.0) for r in range(2)]
        for r in range(2):
            gb[r] += dz[r] / 3
            for c in range(2):
                gW[r][c] += dz[r] * x[c] / 3
    return gW, gb


def flat(W, b) -> list[float]:
    return [W[0][0], W[0][1], W[1][0], W[1][1], b[0], b[1]]


def unflat(v) -> tuple[list[list[float]], list[float]]:
    return [[v[0], v[1]], [v[2], v[3]]], [v[4], v[5]]


def sam_gradient(rho: float) -> list[float]:
    """The gradient at w + rho g / ||g|| (the toolkit's SAM adds 1e-16 to the norm)."""
    g = flat(*ce_gradient(W0, B0))
    norm = math.sqrt(sum(v * v for v in g)) + 1e-16
    w = [a + rho * v / norm for a, v in zip(flat(W0, B0), g)]
    return flat(*ce_gradient(*unflat(w)))


def clip(g: list[float], max_norm: float) -> list[float]:
    """torch.nn.utils.clip_grad_norm_: scale by max_norm / (||g|| + 1e-6) when that is below 1."""
    norm = math.sqrt(sum(v * v for v in g))
    coef = min(1.0, max_norm / (norm + 1e-6))
    return [v * coef for v in g]


def as_state(v: list[float]) -> dict[str, torch.Tensor]:
    W, b = unflat(v)
    return {"1.weight": torch.tensor(W, dtype=torch.float64), "1.bias": torch.tensor(b, dtype=torch.float64)}


def as_flat(state: dict[str, torch.Tensor]) -> list[float]:
    return state["1.weight"].flatten().tolist() + state["1.bias"].tolist()
