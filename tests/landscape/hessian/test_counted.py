"""Progress of a Hessian analysis: every product counted, counts monotone, the last event at the planned total,
and the numbers bit-identical to an analysis nobody watches."""

from __future__ import annotations

import pytest
import torch

from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.models import build_model
from fedtrain.progress import Progress
from landscape.hessian.analysis import analyze_checkpoint, planned_products
from landscape.hessian.counted import CountedOperator, ProductPlan
from landscape.hessian.operator import DenseOperator
from landscape.settings import HessianSettings
from tests.landscape.hessian.cases import single_threaded  # noqa: F401 (autouse fixture)

MLP_KWARGS = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [2]}
QUICK = HessianSettings(num_examples=60, batch_size=30, top_k=2, trace_matvecs=9, density_probes=2, density_steps=5)


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    model = build_model("mlp", seed=0, **MLP_KWARGS)
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=MLP_KWARGS, weights=model.state_dict(), dataset="synthetic"), path)
    return path


def test_counted_operator_counts_columns_and_changes_nothing():
    matrix = torch.randn(5, 5, dtype=torch.float64)
    seen: list[int] = []
    counted = CountedOperator(DenseOperator(matrix + matrix.T), seen.append)
    block = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(counted.matmat(block), (matrix + matrix.T) @ block)
    assert torch.equal(counted.matvec(block[:, 0]), (matrix + matrix.T) @ block[:, 0])
    assert seen == [3, 4] and counted.count == 4 and counted.dim == 5


def test_plan_shrinks_to_what_a_component_used():
    events: list[Progress] = []
    plan = ProductPlan({"eigenvalues": 10, "trace": 3}, events.append)
    operator = plan.counted(DenseOperator(torch.eye(2, dtype=torch.float64)), "eigenvalues")
    operator.matvec(torch.ones(2, dtype=torch.float64))
    plan.finish("eigenvalues", 1)
    assert [(e.done, e.total, e.detail) for e in events] == [(0, 13, "eigenvalues"), (1, 13, "eigenvalues"), (1, 4, "eigenvalues")]
    assert ProductPlan({"x": 1}, None).counted(operator, "x") is operator  # nobody listens: no wrapper


def test_analysis_reports_monotone_product_counts_ending_at_the_total_and_same_numbers(checkpoint_path):
    events: list[Progress] = []
    watched = analyze_checkpoint(checkpoint_path, QUICK, progress=events.append)
    alone = analyze_checkpoint(checkpoint_path, QUICK)
    assert watched.eigenvalues == alone.eigenvalues and watched.trace["estimate"] == alone.trace["estimate"]
    assert torch.equal(torch.as_tensor(watched.density["nodes"]), torch.as_tensor(alone.density["nodes"]))
    done = [e.done for e in events]
    assert done == sorted(done) and done[0] == 0
    assert events[-1].done == events[-1].total == watched.hvps["total"]
    assert all(e.total >= e.done and e.stage == "hessian" and e.unit == "products" for e in events)
    assert events[0].total == sum(planned_products(QUICK).values()) == 200 + 9 + 10
    assert [e.detail for e in events if e.done == e.total] == ["density"]  # one end, after the last quantity
    assert "--samples" in events[0].hint and {e.detail for e in events} == {"eigenvalues", "trace", "density"}
