"""The GGN and the empirical Fisher against dense oracles: GGN = Hessian for a softmax regression (an exact identity),
the Fisher = the mean outer product of per-sample gradients, and both differ from the Hessian of a nonlinear model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedtrain.errors import ConfigError
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.exact import dense_hessian
from landscape.hessian.ggn import GaussNewtonOperator
from tests.landscape.hessian.cases import MODEL_CASES, single_threaded  # noqa: F401


def _dense(operator):
    return operator.matmat(torch.eye(operator.dim, dtype=torch.float64))


def _softmax_regression():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(30, 12, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (30,), generator=generator)
    return model, [(x[:17], y[:17]), (x[17:], y[17:])]


def test_the_ggn_of_a_softmax_regression_is_its_hessian():
    model, batches = _softmax_regression()
    ggn = _dense(GaussNewtonOperator(model, cross_entropy, batches, kind="ggn"))
    torch.testing.assert_close(ggn, dense_hessian(model, cross_entropy, batches), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", MODEL_CASES[:2], ids=lambda c: c.name)
def test_the_ggn_is_symmetric_positive_semidefinite_and_differs_from_the_hessian_of_a_nonlinear_model(case):
    ggn = _dense(GaussNewtonOperator(case.model(), cross_entropy, case.batches(), kind="ggn"))
    hessian = dense_hessian(case.model(), cross_entropy, case.batches())
    torch.testing.assert_close(ggn, ggn.T, rtol=1e-10, atol=1e-12)
    assert float(torch.linalg.eigvalsh(ggn)[0]) > -1e-10
    assert float((ggn - hessian).abs().max()) > 1e-3


@pytest.mark.parametrize("case", MODEL_CASES[:2], ids=lambda c: c.name)
def test_the_empirical_fisher_is_the_mean_outer_product_of_per_sample_gradients(case):
    model, batches = case.model(), case.batches()
    fisher = _dense(GaussNewtonOperator(model, cross_entropy, batches, kind="fisher"))
    rows = []
    for x, y in batches:
        for i in range(len(y)):
            loss = cross_entropy(model(x[i : i + 1]), y[i : i + 1])
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]))
    grads = torch.stack(rows)
    torch.testing.assert_close(fisher, grads.T @ grads / len(rows), rtol=1e-10, atol=1e-12)


def test_an_unknown_kind_is_refused():
    model, batches = _softmax_regression()
    with pytest.raises(ConfigError, match="kind must be one of ggn, fisher"):
        GaussNewtonOperator(model, cross_entropy, batches, kind="hessian")
