"""Autograd against the source texts' hand-derived gradients, and gradcheck on the nets."""

import math

import pytest
import torch

from lightning_models.nets import MLP, AutoEncoder


def test_text001_hand_gradients_of_the_linear_model():
    """Text 001: for y = Wx + b and loss (y - t)^2, dW = 2(y - t)x and db = 2(y - t)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    for _ in range(5):
        x = torch.rand(1, 1)
        t = torch.exp(x)
        model.zero_grad()
        y = model(x)
        ((y - t) ** 2).sum().backward()
        residual = (y - t).detach()
        torch.testing.assert_close(model.weight.grad, 2 * residual * x)
        torch.testing.assert_close(model.bias.grad, (2 * residual).flatten())


def test_text004_autograd_value():
    """Text 004: theta = 1, z = (1 - log(1 + e^theta))^2 gives dz/dtheta = 0.458025..."""
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    z = (1 - torch.log(1 + torch.exp(theta))) ** 2
    z.backward()
    sigmoid = 1 / (1 + math.exp(-1))
    by_hand = -2 * (1 - math.log(1 + math.e)) * sigmoid
    assert theta.grad.item() == pytest.approx(by_hand, abs=1e-12)
    assert theta.grad.item() == pytest.approx(0.458025, abs=1e-6)


@pytest.mark.parametrize(
    ("net", "in_features"),
    [
        (MLP(3, 2, [5, 4], "tanh"), 3),
        (MLP(1, 1, [16, 32], "leaky_relu", negative_slope=0.2, output_activation="leaky_relu"), 1),
        (MLP(4, 3, [6], "sigmoid"), 4),
        (AutoEncoder(4, 4, 2, [3], "tanh", "sigmoid"), 4),
    ],
    ids=["mlp_tanh", "text001_leaky", "text000_sigmoid", "autoencoder"],
)
def test_gradcheck_in_double_precision(net, in_features):
    """Inputs and parameters: autograd's gradients equal finite differences."""
    torch.manual_seed(0)
    net = net.double()
    x = torch.randn(6, in_features, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-5)
    parameters = tuple(net.parameters())

    def as_function_of_parameters(*values):
        return torch.func.functional_call(net, {name: v for (name, _), v in zip(net.named_parameters(), values)}, (x.detach(),))

    assert torch.autograd.gradcheck(as_function_of_parameters, tuple(p.detach().requires_grad_() for p in parameters))
