"""HessianOperator: equals the dense Hessian of the mean loss (count-weighted batches) on every device; never touches
the model; no mixed precision; on a GPU, no host read inside a product."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fedtrain.errors import ConfigError

from landscape.hessian.exact import dense_hessian
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.operator import DenseOperator, HessianOperator, as_operator, split_batches
from tests.landscape.hessian.cases import MODEL_CASES, MODEL_IDS, single_threaded  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("matmat_method", ["loop", "batched"])
@pytest.mark.parametrize("cache_graph", [False, True], ids=["recomputed", "cached-graph"])
@pytest.mark.parametrize("method", ["fwd-rev", "double-backward"])
@pytest.mark.parametrize("case", MODEL_CASES, ids=MODEL_IDS)
def test_matvec_and_matmat_equal_the_dense_hessian(case, method, cache_graph, matmat_method, device):
    operator = case.operator(method=method, cache_graph=cache_graph, matmat_method=matmat_method, device=device)
    assert operator.cache_graph is cache_graph
    exact = dense_hessian(case.model(), cross_entropy, case.batches())  # on the CPU
    V = torch.randn(operator.dim, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    products = operator.matmat(V.to(device)), operator.matvec(V[:, 0].to(device))
    assert all(p.device.type == device.type and p.dtype == torch.float64 for p in products)
    torch.testing.assert_close(products[0].cpu(), exact @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(products[1].cpu(), exact @ V[:, 0], rtol=1e-10, atol=1e-12)


def test_the_model_copy_and_the_data_live_on_the_device_and_the_callers_model_stays(device):
    case = MODEL_CASES[1]
    model, batches = case.model(), case.batches()  # on the CPU
    before = copy.deepcopy(model.state_dict())
    operator = HessianOperator(model, cross_entropy, batches, device=device)
    assert operator.device.type == device.type
    assert all(p.device.type == device.type for p in operator.model.parameters())
    assert all(x.device.type == device.type and y.device.type == device.type for x, y in operator.batches)
    assert all(p.device.type == device.type for p in operator.unflatten(torch.ones(operator.dim, dtype=torch.float64)).values())
    assert all(p.device.type == "cpu" for p in model.parameters()) and all(x.device.type == "cpu" for x, _ in batches)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # default: the model's own device
    assert HessianOperator(model.to(device), cross_entropy, batches).device.type == device.type


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cache_graph", [False, True], ids=["recomputed", "cached-graph"])
def test_a_product_on_cuda_reads_nothing_back_to_the_host(cache_graph):
    operator = MODEL_CASES[1].operator(device=torch.device("cuda"), cache_graph=cache_graph)
    vector = torch.randn(operator.dim, dtype=torch.float64, device="cuda")
    operator.matvec(vector)  # warm-up: kernel selection may synchronise once
    torch.cuda.set_sync_debug_mode("error")
    try:
        operator.matvec(vector)  # raises on any synchronising call (.item(), float(t), a host copy)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("cache_graph", [False, True], ids=["recomputed", "cached-graph"])
@pytest.mark.parametrize("method", ["fwd-rev", "double-backward"])
def test_batched_matmat_makes_one_pass_over_the_data_and_equals_the_loop(method, cache_graph):
    case = MODEL_CASES[1]
    loop = case.operator(method=method, cache_graph=cache_graph, matmat_method="loop")
    batched = case.operator(method=method, cache_graph=cache_graph, matmat_method="batched")
    calls = {"hvp": 0, "graph": 0}
    hvp, first_order_graph = batched.hvp, batched._first_order_graph

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)
        return wrapper

    batched.hvp, batched._first_order_graph = counted("hvp", hvp), counted("graph", first_order_graph)
    V = torch.randn(loop.dim, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(batched.matmat(V), loop.matmat(V), rtol=1e-12, atol=1e-14)
    passes = 0 if cache_graph else len(case.batch_sizes)  # the cached graphs were built with the operator
    assert calls == ({"hvp": passes, "graph": 0} if method == "fwd-rev" and not cache_graph else {"hvp": 0, "graph": passes})


def test_unflatten_gives_new_tensors_and_flatten_inverts_it_for_vectors_and_matrices():
    operator = MODEL_CASES[1].operator()
    matrix = torch.randn(operator.dim, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    columns = operator.unflatten(matrix)
    assert all(columns[name].shape == (3, *p.shape) for name, p in operator.params.items())
    assert torch.equal(operator.flatten(columns), matrix)
    vector = matrix[:, 1]
    params = operator.unflatten(vector)
    assert list(params) == list(operator.params) and all(params[n].shape == p.shape for n, p in operator.params.items())
    assert all(torch.equal(params[name], columns[name][1]) for name in params)
    assert torch.equal(operator.flatten(params), vector)
    saved = vector.clone()
    params["fc.weight"].zero_()  # the tensors are the caller's to change: the vector stays as it was
    assert torch.equal(vector, saved) and not torch.equal(operator.flatten(params), saved)


def test_batches_are_weighted_by_their_sample_counts():
    case = MODEL_CASES[0]
    batches = case.batches()  # sizes 7 and 5
    inputs = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    one_batch = HessianOperator(case.model(), cross_entropy, [(inputs, labels)])
    two_batches = HessianOperator(case.model(), cross_entropy, batches)
    v = torch.randn(one_batch.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(two_batches.matvec(v), one_batch.matvec(v), rtol=1e-10, atol=1e-12)
    assert [len(y) for _, y in split_batches(inputs, labels, 5)] == [5, 5, 2]


def test_the_callers_model_is_unchanged():
    case = MODEL_CASES[1]
    model = case.model().train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    model.fc.bias.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    operator = HessianOperator(model, cross_entropy, case.batches())
    operator.matvec(torch.ones(operator.dim, dtype=torch.float64))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, False]
    assert "fc.bias" not in operator.params  # frozen parameters are held fixed


def test_float32_models_are_computed_in_float32_and_accumulated_in_float64(device):
    # the same tolerance on CUDA: its products are full float32 too (TF32 off inside the operator)
    case = MODEL_CASES[0]
    model32 = case.model().float()
    batches32 = [(x.float(), y) for x, y in case.batches()]
    operator = HessianOperator(model32, cross_entropy, batches32, device=device)
    assert operator.dtype == torch.float32
    exact = dense_hessian(model32, cross_entropy, batches32)
    v = torch.randn(operator.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    result = operator.matvec(v.to(device))
    assert result.dtype == torch.float64
    torch.testing.assert_close(result.cpu(), exact @ v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cache_graph", [False, True], ids=["recomputed", "cached-graph"])
def test_an_enclosing_autocast_does_not_reach_the_products(cache_graph, device):
    case = MODEL_CASES[0]
    model32 = case.model().float()
    batches32 = [(x.float(), y) for x, y in case.batches()]
    seen = []

    def loss(outputs, targets):
        seen.append(outputs.dtype)
        return cross_entropy(outputs, targets)

    v = torch.randn(sum(p.numel() for p in model32.parameters()), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    plain = HessianOperator(model32, loss, batches32, cache_graph=cache_graph, device=device).matvec(v.to(device))
    with torch.autocast(device.type, dtype=torch.bfloat16):
        mixed = HessianOperator(model32, loss, batches32, cache_graph=cache_graph, device=device).matvec(v.to(device))
    assert set(seen) == {torch.float32}
    torch.testing.assert_close(mixed, plain, rtol=1e-6, atol=1e-9)  # bfloat16 would be ~1e-2 off


def test_a_model_with_nan_weights_is_refused_with_its_cause():
    case = MODEL_CASES[0]
    model = case.model()
    with torch.no_grad():
        model.net[1].weight[0, 0] = float("nan")
    with pytest.raises(ConfigError, match=r"not finite: the parameters net\.1\.weight hold nan or inf.*diverged"):
        HessianOperator(model, cross_entropy, case.batches())
    inputs, labels = case.batches()[0]
    with pytest.raises(ConfigError, match="the loss on the first batch is not finite"):
        HessianOperator(case.model(), cross_entropy, [(inputs * float("inf"), labels)])


def test_half_precision_is_refused():
    case = MODEL_CASES[0]
    for model, dtype in ((case.model().half(), None), (case.model(), torch.bfloat16)):
        with pytest.raises(ConfigError, match="half precision is not accurate enough"):
            HessianOperator(model, cross_entropy, case.batches(), dtype=dtype)


def test_train_mode_dropout_is_refused_as_non_deterministic():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.Linear(8, 3)).double()
    batches = MODEL_CASES[0].batches()
    with pytest.raises(RuntimeError, match="Hessian-vector products differ between two passes"):
        HessianOperator(model, cross_entropy, batches, bn_mode="train")
    HessianOperator(model, cross_entropy, batches, bn_mode="eval")  # eval mode: dropout off, deterministic
    HessianOperator(model, cross_entropy, batches, bn_mode="train", check_deterministic=False)


def test_batchnorm_is_evaluated_in_eval_mode_without_touching_running_statistics():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)).double().train()
    before = copy.deepcopy(model.state_dict())
    operator = HessianOperator(model, cross_entropy, MODEL_CASES[0].batches())
    operator.matvec(torch.ones(operator.dim, dtype=torch.float64))
    assert operator.bn_mode == "eval" and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_arguments_are_refused():
    case = MODEL_CASES[0]
    with pytest.raises(ValueError, match="at least one batch"):
        HessianOperator(case.model(), cross_entropy, [])
    with pytest.raises(ValueError, match="bn_mode must be"):
        HessianOperator(case.model(), cross_entropy, case.batches(), bn_mode="batch")
    frozen = case.model().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter with requires_grad=True"):
        HessianOperator(frozen, cross_entropy, case.batches())
    operator = case.operator()
    with pytest.raises(ValueError, match="matvec expects a vector of shape"):
        operator.matvec(torch.ones(3, dtype=torch.float64))
    with pytest.raises(ConfigError, match="matmat expects a matrix of shape"):
        operator.matmat(torch.ones(operator.dim, dtype=torch.float64))
    with pytest.raises(ConfigError, match="matmat_method must be one of loop, batched"):
        case.operator(matmat_method="vmap")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        split_batches(torch.ones(2), torch.ones(2), 0)


def test_dense_tensors_are_operators():
    matrix = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    op = as_operator(matrix)
    assert isinstance(op, DenseOperator) and op.dim == 2
    torch.testing.assert_close(op.matvec(torch.tensor([1.0, 0.0], dtype=torch.float64)), torch.tensor([2.0, 1.0], dtype=torch.float64))
    with pytest.raises(TypeError, match="Expected a LinearOperator"):
        as_operator([[1.0]])
    with pytest.raises(ValueError, match="square matrix"):
        DenseOperator(torch.ones(2, 3))


def test_graph_cache_is_automatic_for_small_problems_only():
    case = MODEL_CASES[0]
    assert case.operator().cache_graph
    from landscape.hessian import operator as operator_module

    limit = operator_module.CACHE_MAX_EXAMPLES
    try:
        operator_module.CACHE_MAX_EXAMPLES = 3
        assert not case.operator().cache_graph
    finally:
        operator_module.CACHE_MAX_EXAMPLES = limit
