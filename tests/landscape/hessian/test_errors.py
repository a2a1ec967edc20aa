"""Errors a user can cause in the Hessian engine are the library's ConfigError (a LandscapeError), never a bare ValueError."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import landscape.hessian
from fedtrain.errors import ConfigError, LandscapeError
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.density import density_slq, smooth_density
from landscape.hessian.hvp import make_hvp
from landscape.hessian.lanczos import top_eigenpairs
from landscape.hessian.operator import DenseOperator, HessianOperator, split_batches
from landscape.hessian.power import power_iteration_eigenpairs
from landscape.hessian.trace import mean_and_stderr, random_probes, trace_hutchinson, trace_hutchpp
from tests.landscape.hessian.cases import MODEL_CASES, single_threaded  # noqa: F401 (autouse fixture)

CASE = MODEL_CASES[0]
BAD_CALLS = {
    "dense operator not square": lambda: DenseOperator(torch.ones(2, 3)),
    "batch size 0": lambda: split_batches(torch.ones(2), torch.ones(2), 0),
    "no batches": lambda: HessianOperator(CASE.model(), cross_entropy, []),
    "bn mode": lambda: HessianOperator(CASE.model(), cross_entropy, CASE.batches(), bn_mode="batch"),
    "no trainable parameter": lambda: HessianOperator(CASE.model().requires_grad_(False), cross_entropy, CASE.batches()),
    "half precision": lambda: HessianOperator(CASE.model(), cross_entropy, CASE.batches(), dtype=torch.bfloat16),
    "matvec shape": lambda: CASE.operator().matvec(torch.ones(3, dtype=torch.float64)),
    "hvp method": lambda: make_hvp(CASE.model(), cross_entropy, method="reverse"),
    "lanczos k": lambda: top_eigenpairs(torch.eye(3), 4),
    "power stop": lambda: power_iteration_eigenpairs(torch.eye(3), 1, stop="never"),
    "trace budget": lambda: trace_hutchinson(torch.eye(2), 0, generator=torch.Generator()),
    "hutch++ budget": lambda: trace_hutchpp(torch.eye(2), 2, generator=torch.Generator()),
    "probe distribution": lambda: random_probes(3, 1, torch.Generator(), "uniform"),
    "no samples": lambda: mean_and_stderr([]),
    "density probes": lambda: density_slq(torch.eye(3), num_probes=0, generator=torch.Generator()),
    "bandwidth": lambda: smooth_density(torch.zeros(1, 1), torch.ones(1, 1), bandwidth=0.0),
}


@pytest.mark.parametrize("call", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_bad_arguments_raise_the_library_config_error(call):
    with pytest.raises(ConfigError) as caught:
        call()
    assert isinstance(caught.value, LandscapeError) and str(caught.value)


def test_no_module_of_the_engine_raises_a_bare_value_error():
    bare = []
    for path in sorted(Path(landscape.hessian.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(target, ast.Name) and target.id == "ValueError":
                    bare.append(f"{path.name}:{node.lineno}")
    assert not bare
