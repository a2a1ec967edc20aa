"""Surface grids: exact centre, analytic quadratic, vectorised = naive, untouched model, BatchNorm, planes, resume, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import landscape.surface.api as surface_run
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.errors import CheckpointError, ConfigError
from fedtrain.models import build_model
from landscape.surface.directions import directions_from_vectors, plane_directions, random_directions
from landscape.surface.api import surface_for_checkpoint
from landscape.surface.grid import compute_surface, interpolation_coordinates, symmetric_coordinates
from landscape.surface.record import load_surface

MLP_KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [8]}


@pytest.fixture(scope="module")
def synthetic():
    dataset = load_dataset("synthetic")
    return {"train": evaluation_tensors(dataset, "train", 200, 0), "test": evaluation_tensors(dataset, "test", 100, 0)}


def mlp(seed: int = 0, **kwargs) -> nn.Module:
    return build_model("mlp", **{**MLP_KWARGS, **kwargs}, seed=seed).eval()


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters()}


def write_checkpoint(path, model: nn.Module, **kwargs) -> str:
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs={**MLP_KWARGS, **kwargs}, weights=model.state_dict(), dataset="synthetic"), path)
    return str(path)


def test_symmetric_coordinates_are_exact():
    x = symmetric_coordinates(1.0, 21)
    assert x[10] == 0.0 and np.array_equal(x, -x[::-1]) and x[0] == -1.0 and x[-1] == 1.0
    t = interpolation_coordinates(21, margin=0.5)
    assert 0.0 in t and 1.0 in t and t[0] == -0.5 and t[-1] == 1.5


def test_centre_equals_the_plain_loss_exactly(synthetic):
    model = mlp()
    x, y = synthetic["train"]
    surface = compute_surface(model, random_directions(params_of(model), seed=0), [symmetric_coordinates(1.0, 5)] * 2,
                              {"train": (x, y)}, batch_size=len(y))
    with torch.no_grad():
        logits = model(x)
        plain_loss = nn.functional.cross_entropy(logits, y, reduction="none").double().sum() / len(y)
        plain_acc = (logits.argmax(1) == y).double().mul(100).sum() / len(y)
    assert surface.value("train", "loss")[2, 2] == plain_loss.item()
    assert surface.value("train", "acc")[2, 2] == plain_acc.item()
    assert surface.value("train", "loss")[0, 0] != plain_loss.item()


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
def test_chunked_evaluation_equals_a_naive_per_point_loop(synthetic, method):
    model = build_model("cnn", input_shape=(1, 16, 16), num_classes=10, seed=0).eval()
    x, y = synthetic["test"]
    directions = random_directions(params_of(model), seed=1)
    coordinates = [symmetric_coordinates(0.5, 3)] * 2
    surface = compute_surface(model, directions, coordinates, {"test": (x, y)}, batch_size=32, points_per_pass=4, method=method)
    naive = copy.deepcopy(model)
    for i, a in enumerate(coordinates[0]):
        for j, b in enumerate(coordinates[1]):
            naive.load_state_dict(directions.point((a, b)))
            with torch.no_grad():
                logits = naive(x)
            loss = nn.functional.cross_entropy(logits, y).item()
            acc = (logits.argmax(1) == y).double().mean().item() * 100
            assert surface.value("test", "loss")[i, j] == pytest.approx(loss, rel=1e-6, abs=1e-6)
            assert surface.value("test", "acc")[i, j] == pytest.approx(acc, abs=1e-9)


def test_chunk_size_does_not_change_loop_results(synthetic):
    model = mlp()
    directions = random_directions(params_of(model), seed=0)
    coordinates = [symmetric_coordinates(1.0, 4)] * 2
    one = compute_surface(model, directions, coordinates, synthetic, points_per_pass=1)
    seven = compute_surface(model, directions, coordinates, synthetic, points_per_pass=7)
    assert all(np.array_equal(one.values[k], seven.values[k]) for k in one.values)


def test_the_callers_model_and_its_mode_are_unchanged(synthetic):
    model = mlp().train()
    model.net[1].weight.requires_grad_(False)
    model.net[3].weight.grad = torch.ones_like(model.net[3].weight)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    compute_surface(model, random_directions(params_of(model), seed=0), [symmetric_coordinates(1.0, 3)] * 2, synthetic,
                    method="vmap")
    assert model.training
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


def test_bn_recalibrate_recomputes_statistics_at_each_point_and_eval_keeps_them(synthetic):
    torch.manual_seed(0)
    model = BatchNormNet().eval()
    x, y = synthetic["train"]
    buffers_before = {n: b.clone() for n, b in model.named_buffers()}
    directions = random_directions(params_of(model), seed=0, ndim=1)
    grid = [np.array([0.0, 0.5])]
    recal = compute_surface(model, directions, grid, {"train": (x, y)}, bn="recalibrate", recalibration_inputs=x, batch_size=len(y))
    frozen = compute_surface(model, directions, grid, {"train": (x, y)}, bn="eval", batch_size=len(y))
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


def test_plane_through_checkpoints_puts_each_model_at_its_coordinates(tmp_path, synthetic):
    models = [mlp(s) for s in (0, 1, 2)]
    paths = [write_checkpoint(tmp_path / f"m{i}.pt", m) for i, m in enumerate(models)]
    surface = surface_for_checkpoint(paths[0], plane=paths[1:], steps=3, splits="test", num_examples=100)
    coordinates = surface.metadata["directions"]["model_coordinates"]
    assert surface.metadata["kind"] == "plane" and len(coordinates) == 3
    assert surface.xcoordinates.min() < min(c[0] for c in coordinates) and surface.ycoordinates.max() > coordinates[2][1]
    plane = plane_directions(*(params_of(m) for m in models))
    x, y = synthetic["test"]
    for model, (a, b) in zip(models, coordinates):
        at_model = compute_surface(models[0], plane, [np.array([a]), np.array([b])], {"test": (x, y)})
        with torch.no_grad():
            own = nn.functional.cross_entropy(model(x), y).item()
        assert at_model.value("test", "loss")[0, 0] == pytest.approx(own, rel=1e-5)


def test_interpolation_through_checkpoints_hits_both_ends(tmp_path, synthetic):
    a, b = mlp(0), mlp(1)
    paths = [write_checkpoint(tmp_path / "a.pt", a), write_checkpoint(tmp_path / "b.pt", b)]
    surface = surface_for_checkpoint(paths[0], interpolate=paths[1], steps=9, margin=0.25, splits="test", num_examples=100)
    x, y = synthetic["test"]
    for model, t in ((a, 0.0), (b, 1.0)):
        with torch.no_grad():
            own = nn.functional.cross_entropy(model(x), y).item()
        index = int(np.flatnonzero(surface.xcoordinates == t)[0])
        assert surface.value("test", "loss")[index] == pytest.approx(own, rel=1e-5)
    assert surface.ndim == 1 and surface.metadata["checkpoints"][1]["path"] == paths[1]


def test_resume_of_a_partial_grid_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    settings = dict(steps=5, splits=("train", "test"), num_examples=150, points_per_pass=4)
    full = surface_for_checkpoint(path, out=tmp_path / "full", **settings)
    saves = []

    def interrupted_save(surface, target):
        if len(saves) == 2:
            raise KeyboardInterrupt
        saves.append(surface.done.sum())
        return surface_run.save_surface.__wrapped__(surface, target)

    interrupted_save.__wrapped__ = surface_run.save_surface
    monkeypatch.setattr(surface_run, "save_surface", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        surface_for_checkpoint(path, out=tmp_path / "cut", **settings)
    monkeypatch.undo()
    partial = load_surface(tmp_path / "cut" / "surface.npz")
    assert partial.done.sum() == 8 and not partial.complete and np.isnan(partial.value("train", "loss")).sum() == 17
    with pytest.raises(ConfigError, match="unfinished surface"):
        surface_for_checkpoint(path, out=tmp_path / "cut", **settings)
    with pytest.raises(ConfigError, match="different settings.*seed"):
        surface_for_checkpoint(path, out=tmp_path / "cut", resume=True, **{**settings, "seed": 1})
    resumed = surface_for_checkpoint(path, out=tmp_path / "cut", resume=True, **settings)
    assert resumed.complete and load_surface(tmp_path / "cut" / "surface.npz").complete
    assert all(np.array_equal(full.values[k], resumed.values[k]) for k in full.values)


def test_bad_input_gives_clear_errors(tmp_path):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    other = write_checkpoint(tmp_path / "b.pt", mlp(hidden=[4]), hidden=[4])
    with pytest.raises(ConfigError, match="range must be a positive number"):
        surface_for_checkpoint(path, range=0.0)
    with pytest.raises(ConfigError, match="at least 2 steps"):
        surface_for_checkpoint(path, steps=1)
    with pytest.raises(CheckpointError, match="different architectures"):
        surface_for_checkpoint(path, interpolate=other)
    with pytest.raises(ConfigError, match="Nothing to resume"):
        surface_for_checkpoint(path, out=tmp_path / "none", resume=True)
    with pytest.raises(ConfigError, match="splits must be"):
        surface_for_checkpoint(path, splits="valid")
    with pytest.raises(CheckpointError, match="does not exist"):
        surface_for_checkpoint(tmp_path / "missing.pt")


def test_hessian_directions_show_their_eigenvalue_as_curvature(tmp_path):
    path = write_checkpoint(tmp_path / "a.pt", mlp())
    h = 0.05
    surface = surface_for_checkpoint(path, directions="hessian", dims=1, range=h, steps=3, num_examples=200,
                                     batch_size=200, out=tmp_path / "h")
    eigenvalue = surface.metadata["directions"]["eigenvalues"][0]
    loss = surface.value("train", "loss")
    assert surface.metadata["kind"] == "hessian" and surface.metadata["directions"]["axis_norms"][0] == pytest.approx(1.0, abs=1e-5)
    assert (loss[0] - 2 * loss[1] + loss[2]) / h**2 == pytest.approx(eigenvalue, rel=0.05)
    resumed = surface_for_checkpoint(path, directions="hessian", dims=1, range=h, steps=3, num_examples=200,
                                     batch_size=200, out=tmp_path / "h", resume=True)  # same directions recomputed
    assert np.array_equal(resumed.value("train", "loss"), loss)
