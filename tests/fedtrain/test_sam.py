"""SAM / ASAM: the perturbation formulas and one full two-phase step against hand-computed values."""

import pytest
import torch
from torch import nn

from fedtrain.errors import ConfigError
from fedtrain.sam import SAM, asam_epsilon, sam_epsilon, weight_mask


def test_sam_epsilon_is_rho_times_unit_gradient_with_one_global_norm():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]  # global norm 5, not per-tensor norms
    eps = sam_epsilon(grads, rho=0.5)
    assert torch.allclose(eps[0], torch.tensor([0.3, 0.0]))
    assert torch.allclose(eps[1], torch.tensor([0.4]))


def test_sam_epsilon_of_zero_gradient_is_zero_not_nan():
    eps = sam_epsilon([torch.zeros(3)], rho=0.1)
    assert torch.equal(eps[0], torch.zeros(3))


def test_asam_epsilon_scales_weights_by_abs_w_plus_eta_and_leaves_biases_alone():
    w, b = torch.tensor([1.0, -2.0]), torch.tensor([0.5])
    gw, gb = torch.tensor([1.0, 1.0]), torch.tensor([2.0])
    eta, rho = 0.5, 1.0
    # T = |w| + eta on the weight = [1.5, 2.5]; T = 1 on the bias.
    tg = torch.tensor([1.5, 2.5, 2.0])
    norm = tg.norm()
    expected_w = rho * torch.tensor([1.5**2 * 1.0, 2.5**2 * 1.0]) / norm
    expected_b = rho * torch.tensor([2.0]) / norm
    eps = asam_epsilon([w, b], [gw, gb], rho=rho, eta=eta, mask=[True, False])
    assert torch.allclose(eps[0], expected_w)
    assert torch.allclose(eps[1], expected_b)


def test_weight_mask_follows_the_reference_name_rule():
    assert weight_mask(["0.weight", "0.bias", "norm.weight"]) == [True, False, True]


def _tiny_linear() -> nn.Linear:
    layer = nn.Linear(2, 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0]], dtype=torch.float64))
        layer.bias.fill_(0.5)
    return layer


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_sam_step_matches_the_hand_computed_update(adaptive):
    # Loss L(w, b) = 0.5 * (w.x + b - y)^2 on one sample: gradient r*x for w and r for b, r = w.x + b - y.
    x, y = torch.tensor([[2.0, 1.0]], dtype=torch.float64), torch.tensor([[0.0]], dtype=torch.float64)
    lr, wd, rho, eta = 0.1, 0.01, 0.2, 0.3
    layer = _tiny_linear()
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()

    def loss_fn():
        return 0.5 * ((layer(x) - y) ** 2).sum()

    base = torch.optim.SGD(layer.parameters(), lr=lr, weight_decay=wd)
    sam = SAM(list(layer.named_parameters()), base, rho=rho, adaptive=adaptive, eta=eta)
    loss_fn().backward()
    eps = sam.perturb()

    # by hand: r = 2 - 1 + 0.5 = 1.5; g_w = [3, 1.5], g_b = 1.5
    g_w, g_b = torch.tensor([[3.0, 1.5]], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64)
    if adaptive:
        t_w = w0.abs() + eta
        norm = torch.cat([(t_w * g_w).flatten(), g_b]).norm()
        e_w, e_b = rho * t_w**2 * g_w / norm, rho * g_b / norm
    else:
        norm = torch.cat([g_w.flatten(), g_b]).norm()
        e_w, e_b = rho * g_w / norm, rho * g_b / norm
    assert torch.allclose(eps[0], e_w) and torch.allclose(eps[1], e_b)
    assert torch.allclose(layer.weight, w0 + e_w) and torch.allclose(layer.bias, b0 + e_b)
    assert layer.weight.grad is None and layer.bias.grad is None  # cleared for the second pass

    loss_fn().backward()
    r_pert = float((x @ (w0 + e_w).T + (b0 + e_b) - y).squeeze())
    sam.restore_and_step()
    # descent from the UNPERTURBED weights with the perturbed gradient; weight decay at w0, not w0 + eps
    expected_w = w0 - lr * (r_pert * x + wd * w0)
    expected_b = b0 - lr * (torch.tensor([r_pert], dtype=torch.float64) + wd * b0)
    assert torch.allclose(layer.weight, expected_w, atol=1e-14)
    assert torch.allclose(layer.bias, expected_b, atol=1e-14)


def test_restore_is_an_exact_copy_of_the_saved_weights():
    layer = _tiny_linear()
    w0 = layer.weight.detach().clone()
    sam = SAM(list(layer.named_parameters()), torch.optim.SGD(layer.parameters(), lr=0.0), rho=0.37)
    layer(torch.ones(1, 2, dtype=torch.float64)).sum().backward()
    sam.perturb()
    layer(torch.ones(1, 2, dtype=torch.float64)).sum().backward()
    sam.restore_and_step()  # lr 0: the weights must be exactly w0 again
    assert torch.equal(layer.weight, w0)


def test_restore_before_perturb_and_negative_rho_are_refused():
    layer = _tiny_linear()
    base = torch.optim.SGD(layer.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="rho must be >= 0"):
        SAM(list(layer.named_parameters()), base, rho=-0.1)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        SAM(list(layer.named_parameters()), base, rho=0.1, eta=-1.0)
    with pytest.raises(RuntimeError, match=r"restore_and_step\(\) called before perturb\(\)"):
        SAM(list(layer.named_parameters()), base, rho=0.1).restore_and_step()


def test_state_dict_round_trips_the_momentum_buffers():
    layer = _tiny_linear()
    sam = SAM(list(layer.named_parameters()), torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9), rho=0.1)
    layer(torch.ones(1, 2, dtype=torch.float64)).sum().backward()
    sam.perturb()
    layer(torch.ones(1, 2, dtype=torch.float64)).sum().backward()
    sam.restore_and_step()
    state = sam.state_dict()
    other_layer = _tiny_linear()
    other = SAM(list(other_layer.named_parameters()), torch.optim.SGD(other_layer.parameters(), lr=0.1, momentum=0.9), rho=0.5)
    other.load_state_dict(state)
    assert other.rho == 0.1
    buffers = [s["momentum_buffer"] for s in other.base.state_dict()["state"].values()]
    expected = [s["momentum_buffer"] for s in sam.base.state_dict()["state"].values()]
    assert len(buffers) == 2 and all(torch.equal(a, b) for a, b in zip(buffers, expected))


def test_a_negative_radius_or_offset_is_a_configuration_error():
    param = torch.nn.Parameter(torch.ones(2))
    base = torch.optim.SGD([param], lr=0.1)
    with pytest.raises(ConfigError, match=r"rho must be >= 0, got -1.*non-negative radius"):
        SAM([("w", param)], base, rho=-1.0)
    with pytest.raises(ConfigError, match=r"eta must be >= 0, got -0.5.*non-negative offset"):
        SAM([("w", param)], base, rho=0.1, adaptive=True, eta=-0.5)
