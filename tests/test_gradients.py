"""Autograd against the source texts' hand-derived gradients, and gradcheck on the nets."""

import copy
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


def test_repeated_updates_are_plain_sgd_updates_and_the_schedule_steps_once_a_step(tmp_path, monkeypatch):
    """updates_per_step=3 on full-batch iris: every update goes through the optimizer (3 x global_step), the weights
    equal a plain loop's on the same batch, and a OneCycleLR steps once per Lightning step over the trainer's steps."""
    from lightning_models import build
    from tests.conftest import CONFIGS

    monkeypatch.chdir(tmp_path)
    schedule = '{"class_path": "torch.optim.lr_scheduler.OneCycleLR", "init_args": {"max_lr": 0.05}}'
    parts = build(CONFIGS / "iris_logistic_regression.yaml", "--model.init_args.updates_per_step=3", "--trainer.max_epochs=4",
                  "--trainer.logger=false", "--last_checkpoint=null", "--trainer.enable_progress_bar=false",
                  "--trainer.limit_val_batches=0", "--trainer.precision=32-true", f"--model.init_args.scheduler={schedule}")
    model, datamodule = parts.model, parts.datamodule
    reference = copy.deepcopy(model.net)
    parts.trainer.fit(model, datamodule=datamodule)
    (optimizer,) = parts.trainer.optimizers
    assert parts.trainer.global_step == 4 and model.hparams.updates_per_step == 3
    inputs, targets = next(iter(datamodule.train_dataloader()))  # the one full batch
    plain = model.make_optimizer(reference.parameters())
    lrs = torch.optim.lr_scheduler.OneCycleLR(plain, max_lr=0.05, total_steps=4)
    for _ in range(4):
        for _ in range(3):
            plain.zero_grad()
            torch.nn.functional.cross_entropy(reference(inputs), targets).backward()
            plain.step()
        lrs.step()
    assert int(optimizer.state[next(iter(model.net.parameters()))]["step"]) == 4 * 3  # Adam's count of its updates
    for got, expected in zip(model.net.parameters(), reference.parameters()):
        torch.testing.assert_close(got, expected)  # the batch's row order may differ from step to step
    assert optimizer.param_groups[0]["lr"] == pytest.approx(plain.param_groups[0]["lr"])


def test_probabilities_and_predict_step_decide_the_logits_in_one_place():
    from lightning_models import ClassificationModule
    from lightning_models.classification import probabilities

    scores = torch.tensor([[2.0, -1.0, 0.5]])
    torch.testing.assert_close(probabilities(scores, {}), scores.softmax(-1))  # no loss named: the module's default
    torch.testing.assert_close(probabilities(scores, {"loss": "cross_entropy"}), scores.softmax(-1))
    assert torch.equal(probabilities(scores, {"loss": "mse_onehot"}), scores)  # already its output activation's
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    for loss in ("cross_entropy", "mse_onehot"):
        module = ClassificationModule(4, 3, loss=loss, output_activation="sigmoid").eval()
        with torch.no_grad():
            expected = module.net(x).softmax(-1) if loss == "cross_entropy" else torch.sigmoid(module.net(x))
            torch.testing.assert_close(module.predict_step((x, torch.zeros(5, dtype=torch.long)), 0), expected)
