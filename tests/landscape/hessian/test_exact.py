"""The dense-Hessian oracle: exact on an analytic case, refused above its parameter limit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedtrain.errors import ConfigError
from landscape.hessian.exact import dense_hessian
from tests.landscape.hessian.cases import MODEL_CASES, single_threaded  # noqa: F401 (autouse fixture)


def test_linear_least_squares_has_hessian_two_over_n_xtx():
    generator = torch.Generator().manual_seed(0)
    model = nn.Linear(3, 1).double()
    x = torch.randn(9, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(9, 1, generator=generator, dtype=torch.float64)
    mse = nn.functional.mse_loss
    hessian = dense_hessian(model, mse, [(x[:4], y[:4]), (x[4:], y[4:])])
    design = torch.cat([x, torch.ones(9, 1, dtype=torch.float64)], dim=1)  # parameters: weight (3), bias (1)
    torch.testing.assert_close(hessian, 2.0 / 9 * design.T @ design, rtol=1e-12, atol=1e-12)


def test_dense_hessian_is_symmetric_and_refused_above_the_limit():
    case = MODEL_CASES[0]
    hessian = dense_hessian(case.model(), torch.nn.functional.cross_entropy, case.batches())
    assert torch.equal(hessian, hessian.T)
    with pytest.raises(ConfigError, match="refused above max_params=10"):
        dense_hessian(case.model(), torch.nn.functional.cross_entropy, case.batches(), max_params=10)


def test_the_oracle_shares_no_code_with_what_it_checks():
    import ast
    from pathlib import Path

    import landscape.hessian.exact as exact

    tree = ast.parse(Path(exact.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name and name.startswith("landscape")}


def test_the_oracle_needs_a_batch_and_leaves_the_model_alone():
    case = MODEL_CASES[1]
    model = case.model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dense_hessian(model, torch.nn.functional.cross_entropy, case.batches(), dtype=torch.float32)
    assert model.training and next(model.parameters()).dtype == torch.float64
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="at least one"):
        dense_hessian(model, torch.nn.functional.cross_entropy, [])
