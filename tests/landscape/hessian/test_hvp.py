"""Hessian-vector products: both methods equal the dense Hessian times v on every device; parameters and models
untouched; never in mixed precision."""

from __future__ import annotations

import pytest
import torch

from landscape.hessian.exact import dense_hessian
from landscape.hessian.analysis import cross_entropy
from landscape.hessian.hvp import check_params, detect_hvp_method, full_precision, make_hvp
from tests.landscape.hessian.cases import MODEL_CASES, MODEL_IDS, single_threaded  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("case", MODEL_CASES, ids=MODEL_IDS)
def test_forward_over_reverse_and_double_backward_agree_with_the_dense_hessian(case, device):
    model, (batch, _) = case.model().eval(), case.batches()
    generator = torch.Generator().manual_seed(3)
    v = {n: torch.randn(p.shape, generator=generator, dtype=p.dtype) for n, p in model.named_parameters()}
    flat_v = torch.cat([t.reshape(-1) for t in v.values()])
    expected = dense_hessian(model, cross_entropy, [batch]) @ flat_v  # on the CPU
    on_device = model.to(device)
    params = {n: p.detach() for n, p in on_device.named_parameters()}
    batch, v = (batch[0].to(device), batch[1].to(device)), {n: t.to(device) for n, t in v.items()}
    for method in ("fwd-rev", "double-backward"):
        hv = make_hvp(on_device, cross_entropy, method=method)(params, batch, v)
        assert list(hv) == list(params)
        assert all(hv[n].shape == params[n].shape and hv[n].device == params[n].device for n in params)
        torch.testing.assert_close(torch.cat([t.reshape(-1) for t in hv.values()]).cpu(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["fwd-rev", "double-backward"])
def test_products_run_in_the_parameters_precision_inside_an_autocast_context(method, device):
    case = MODEL_CASES[0]
    model = case.model().float().eval().to(device)
    params = {n: p.detach() for n, p in model.named_parameters()}
    x, y = case.batches()[0]
    batch = (x.float().to(device), y.to(device))
    v = {n: torch.ones_like(p) for n, p in params.items()}
    seen = []

    def loss(outputs, targets):
        seen.append((outputs.dtype, torch.is_autocast_enabled(device.type)))
        return cross_entropy(outputs, targets)

    hvp = make_hvp(model, loss, method=method)
    plain = hvp(params, batch, v)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        mixed = hvp(params, batch, v)
    assert seen == [(torch.float32, False)] * 2
    # the same computation: bit for bit on the CPU; on CUDA within float32 rounding (kernels may sum in
    # another order), far below bfloat16's ~1e-2
    exact = device.type == "cpu"
    for name in plain:
        torch.testing.assert_close(mixed[name], plain[name], rtol=0 if exact else 1e-5, atol=0 if exact else 1e-6)


def test_full_precision_turns_tf32_off_on_cuda_only_and_restores_it():
    before = torch.backends.cudnn.allow_tf32
    with full_precision(torch.device("cpu")):
        assert torch.backends.cudnn.allow_tf32 == before and not torch.is_autocast_enabled("cpu")
    torch.backends.cudnn.allow_tf32 = True
    try:
        with full_precision(torch.device("cuda")):  # the flags are plain settings: no GPU needed to check them
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_a_parameter_that_gets_no_gradient_has_zero_hessian_rows():
    case = next(c for c in MODEL_CASES if c.name == "unused-parameter")
    model, (batch, _) = case.model().eval(), case.batches()
    params = {n: p.detach() for n, p in model.named_parameters()}
    v = {n: torch.ones_like(p) for n, p in params.items()}
    for method in ("fwd-rev", "double-backward"):
        hv = make_hvp(model, cross_entropy, method=method)(params, batch, v)
        assert torch.count_nonzero(hv["unused.weight"]) == 0 and torch.count_nonzero(hv["unused.bias"]) == 0
        assert torch.count_nonzero(hv["hidden.weight"]) > 0


def test_the_hvp_leaves_requires_grad_and_grad_of_the_callers_tensors_alone():
    case = MODEL_CASES[0]
    model, (batch, _) = case.model(), case.batches()
    params = {n: p for n, p in model.named_parameters()}  # the live parameters themselves
    v = {n: torch.ones_like(p) for n, p in params.items()}
    for method in ("fwd-rev", "double-backward"):
        make_hvp(model, cross_entropy, method=method)(params, batch, v)
        assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_detect_selects_forward_mode_for_conv_relu_maxpool():
    case = next(c for c in MODEL_CASES if c.name == "tiny-cnn")
    model, (batch, _) = case.model().eval(), case.batches()
    params = {n: p.detach() for n, p in model.named_parameters()}
    assert detect_hvp_method(model, cross_entropy, params, batch) == "fwd-rev"


def test_detect_falls_back_to_double_backward_for_a_layer_without_forward_mode():
    class NoForwardMode(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tanh(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * (1 - torch.tanh(x) ** 2)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return NoForwardMode.apply(self.fc(x))

    model = Net().double()
    batch = (torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1]))
    params = {n: p.detach() for n, p in model.named_parameters()}
    assert detect_hvp_method(model, cross_entropy, params, batch) == "double-backward"


def test_params_must_be_a_dict():
    with pytest.raises(TypeError, match=r"params must be a dict\[str, Tensor\], got list"):
        check_params([torch.zeros(2)])
    with pytest.raises(ValueError, match="method must be one of"):
        make_hvp(torch.nn.Linear(2, 2), cross_entropy, method="finite-difference")
