"""Surface grids: exact centre, analytic quadratic, vectorised = naive, untouched model, BatchNorm; on each device.

Tests taking the ``device`` fixture run on the CPU and, where there is one, on the GPU, with the same
assertions; a GPU's float32 kernels differ from the CPU's in the last bits, so comparisons with a CPU
reference there allow ``GPU_RTOL`` (relative) and one sample's flip of accuracy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from fedtrain.device import device_record, ieee_float32
from fedtrain.errors import ConfigError
from fedtrain.models import build_model
from landscape.surface.directions import directions_from_vectors, random_directions
from landscape.surface.grid import compute_surface, interpolation_coordinates, plane_coordinates, symmetric_coordinates
from tests.landscape.surface.cases import mlp, params_of

GPU_RTOL = 1e-5  # float32 losses of a GPU against the CPU's (full float32 on both: TF32 is off)


def test_symmetric_coordinates_are_exact():
    x = symmetric_coordinates(1.0, 21)
    assert x[10] == 0.0 and np.array_equal(x, -x[::-1]) and x[0] == -1.0 and x[-1] == 1.0
    t = interpolation_coordinates(21, margin=0.5)
    assert 0.0 in t and 1.0 in t and t[0] == -0.5 and t[-1] == 1.5


def test_coordinates_refuse_degenerate_axes_when_called_without_a_settings_record():
    with pytest.raises(ConfigError, match="range must be a positive number"):
        symmetric_coordinates(0.0, 21)
    for call in (lambda: symmetric_coordinates(1.0, 1), lambda: interpolation_coordinates(1),
                 lambda: plane_coordinates([[0, 0], [1, 0], [0, 1]], 1)):
        with pytest.raises(ConfigError, match="at least 2 steps"):
            call()
    with pytest.raises(ConfigError, match="margin must be >= 0"):
        plane_coordinates([[0, 0], [1, 0], [0, 1]], 3, margin=-0.1)


def test_centre_equals_the_plain_loss_exactly(synthetic, device):
    model = mlp()
    x, y = synthetic["train"]
    surface = compute_surface(model, random_directions(params_of(model), seed=0), [symmetric_coordinates(1.0, 5)] * 2,
                              {"train": (x, y)}, batch_size=len(y), device=device)
    on_device, x, y = copy.deepcopy(model).to(device), x.to(device), y.to(device)
    with torch.no_grad(), ieee_float32(device):  # the plain pass, on the same device with the same arithmetic
        logits = on_device(x)
        plain_loss = nn.functional.cross_entropy(logits, y, reduction="none").double().sum() / len(y)
        plain_acc = (logits.argmax(1) == y).double().mul(100).sum() / len(y)
    assert surface.value("train", "loss")[2, 2] == plain_loss.item()
    assert surface.value("train", "acc")[2, 2] == plain_acc.item()
    assert surface.value("train", "loss")[0, 0] != plain_loss.item()
    assert surface.metadata["device_used"] == device_record(torch.device(device))
    assert all(isinstance(v, np.ndarray) for v in surface.values.values())


def test_standard_errors_match_per_sample_statistics_with_small_batches(synthetic):
    model = mlp()
    x, y = synthetic["train"]
    surface = compute_surface(model, random_directions(params_of(model), seed=0, ndim=1), [np.array([0.0])],
                              {"train": (x, y)}, batch_size=7)
    with torch.no_grad():  # the same batches: float32 logits may depend on the batch size in the last bit
        logits = torch.cat([model(x[i : i + 7]) for i in range(0, len(y), 7)])
    losses = nn.functional.cross_entropy(logits, y, reduction="none").double().numpy()
    correct = (logits.argmax(1) == y).double().numpy() * 100
    assert surface.value("train", "loss")[0] == pytest.approx(losses.mean(), rel=1e-12)
    assert surface.value("train", "loss", stderr=True)[0] == pytest.approx(losses.std(ddof=1) / len(y) ** 0.5, rel=1e-10)
    assert surface.value("train", "acc", stderr=True)[0] == pytest.approx(correct.std(ddof=1) / len(y) ** 0.5, rel=1e-10)


class QuadraticLoss(nn.Module):
    """Logits whose cross-entropy for label 0 is exactly q(theta) = c + 0.5 theta^T A theta (float64)."""

    def __init__(self, matrix: torch.Tensor, c: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.linspace(-1, 1, matrix.shape[0], dtype=torch.float64))
        self.register_buffer("matrix", matrix)
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.c + 0.5 * self.theta @ self.matrix @ self.theta
        other = torch.log(torch.expm1(q)).expand(x.shape[0])  # log(1 + e^other) = q
        return torch.stack([torch.zeros_like(other), other], dim=1)


def test_quadratic_model_gives_the_analytic_surface():
    generator = torch.Generator().manual_seed(0)
    root = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    matrix, c = root @ root.T + torch.eye(4, dtype=torch.float64), 0.3
    model = QuadraticLoss(matrix, c)
    d1, d2 = (torch.randn(4, generator=generator, dtype=torch.float64) for _ in range(2))
    directions = directions_from_vectors(params_of(model), [{"theta": d1}, {"theta": d2}], kind="test", info={})
    xs, ys = symmetric_coordinates(0.5, 5), symmetric_coordinates(0.3, 3)
    inputs, labels = torch.zeros(6, 1, dtype=torch.float64), torch.zeros(6, dtype=torch.int64)
    surface = compute_surface(model, directions, [xs, ys], {"train": (inputs, labels)}, batch_size=4)
    theta = model.theta.detach()
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            point = theta + a * d1 + b * d2
            assert surface.value("train", "loss")[i, j] == pytest.approx((c + 0.5 * point @ matrix @ point).item(), rel=1e-12)
    assert np.all(surface.value("train", "loss", stderr=True) == 0.0)  # every sample has the same loss


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_chunked_evaluation_equals_a_naive_per_point_loop(synthetic, method, device):
    model = build_model("cnn", input_shape=(1, 16, 16), num_classes=10, seed=0).eval()
    x, y = synthetic["test"]
    directions = random_directions(params_of(model), seed=1)
    coordinates = [symmetric_coordinates(0.5, 3)] * 2
    surface = compute_surface(model, directions, coordinates, {"test": (x, y)}, batch_size=32, points_per_pass=4, method=method,
                              device=device)
    rtol, acc_tol = (1e-6, 1e-9) if device.type == "cpu" else (GPU_RTOL, 100 / len(y))
    naive = copy.deepcopy(model)
    for i, a in enumerate(coordinates[0]):
        for j, b in enumerate(coordinates[1]):
            naive.load_state_dict(directions.point((a, b)))
            with torch.no_grad():
                logits = naive(x)
            loss = nn.functional.cross_entropy(logits, y).item()
            acc = (logits.argmax(1) == y).double().mean().item() * 100
            assert surface.value("test", "loss")[i, j] == pytest.approx(loss, rel=rtol, abs=1e-6)
            assert surface.value("test", "acc")[i, j] == pytest.approx(acc, abs=acc_tol)


def test_chunk_size_does_not_change_loop_results(synthetic, device):
    model = mlp()
    directions = random_directions(params_of(model), seed=0)
    coordinates = [symmetric_coordinates(1.0, 4)] * 2
    one = compute_surface(model, directions, coordinates, synthetic, points_per_pass=1, device=device)
    seven = compute_surface(model, directions, coordinates, synthetic, points_per_pass=7, device=device)
    assert all(np.array_equal(one.values[k], seven.values[k]) for k in one.values)


def test_the_callers_model_and_its_mode_are_unchanged(synthetic, device):
    model = mlp().train()
    model.net[1].weight.requires_grad_(False)
    model.net[3].weight.grad = torch.ones_like(model.net[3].weight)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    directions = random_directions(params_of(model), seed=0)
    compute_surface(model, directions, [symmetric_coordinates(1.0, 3)] * 2, synthetic, method="vmap", device=device)
    assert model.training and all(t.device.type == "cpu" for t in [*model.state_dict().values(), *directions.origin.values()])
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(model.net[3].weight.grad, torch.ones_like(model.net[3].weight)) and model.net[1].weight.grad is None


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(256, 6), nn.BatchNorm1d(6))
        self.head = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_bn_recalibrate_recomputes_statistics_at_each_point_and_eval_keeps_them(synthetic, device):
    torch.manual_seed(0)
    model = BatchNormNet().eval()
    x, y = synthetic["train"]
    buffers_before = {n: b.clone() for n, b in model.named_buffers()}
    directions = random_directions(params_of(model), seed=0, ndim=1)
    grid = [np.array([0.0, 0.5])]
    recal = compute_surface(model, directions, grid, {"train": (x, y)}, bn="recalibrate", recalibration_inputs=x, batch_size=len(y),
                            device=device)
    frozen = compute_surface(model, directions, grid, {"train": (x, y)}, bn="eval", batch_size=len(y), device=device)
    assert all(torch.equal(buffers_before[n], b) for n, b in model.named_buffers())
    for k, coefficient in enumerate(grid[0]):
        reference = copy.deepcopy(model)
        reference.load_state_dict({**directions.point((coefficient,)), **buffers_before}, strict=True)
        with torch.no_grad():
            features = reference.body[:2](x)
            reference.body[2].running_mean.copy_(features.mean(0))
            reference.body[2].running_var.copy_(features.var(0, unbiased=True))
            loss = nn.functional.cross_entropy(reference(x), y).item()
        assert recal.value("train", "loss")[k] == pytest.approx(loss, rel=1e-5)
    assert frozen.value("train", "loss")[0] != pytest.approx(recal.value("train", "loss")[0], rel=1e-3)
    assert recal.metadata["bn"] == "recalibrate" and recal.metadata["has_batchnorm"] is True
    with pytest.raises(ConfigError, match="recalibration_inputs"):
        compute_surface(model, directions, grid, {"train": (x, y)}, bn="recalibrate")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_a_gpu_surface_agrees_with_the_cpus(synthetic, method):
    model = build_model("cnn", input_shape=(1, 16, 16), num_classes=10, seed=0).eval()
    directions = random_directions(params_of(model), seed=1)
    coordinates = [symmetric_coordinates(0.5, 5)] * 2
    cpu, gpu = (compute_surface(model, directions, coordinates, synthetic, batch_size=64, points_per_pass=8, method=method,
                                device=device) for device in ("cpu", "cuda"))
    for split, (_, labels) in synthetic.items():
        np.testing.assert_allclose(gpu.value(split, "loss"), cpu.value(split, "loss"), rtol=GPU_RTOL)
        np.testing.assert_allclose(gpu.value(split, "acc"), cpu.value(split, "acc"), atol=100 / len(labels))
    assert gpu.metadata["device_used"]["device"].startswith("cuda") and cpu.metadata["device_used"]["device"] == "cpu"
