"""Panels for 1-D and 2-D synthetic experiments: fitted curve, decision surface, polynomial, the (W, b) path over the
loss surface, log-scale loss curves, and a scikit-learn baseline."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.utilities import rank_zero_info
from sklearn.linear_model import LogisticRegression

from datamodules.synthetic import describe_polynomial
from lightning_models.callbacks.panel import PredictionPanel, tensorboard_writer
from lightning_models.classification import probabilities


class FunctionFitPanel(PredictionPanel):
    """The fitted curve over the true function on ``points`` evenly spaced x in [low, high] (a datamodule with
    ``points(x) -> (inputs, targets)``); at test end it prints the prediction at ``probe`` (text 001: x = 0.2)."""

    tag = "fitted_curve"

    def __init__(self, low: float = 0.0, high: float = 1.0, points: int = 100, probe: float = 0.2, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.low, self.high, self.count, self.probe = low, high, points, probe

    def curve(self, trainer: pl.Trainer, module: pl.LightningModule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = trainer.datamodule.points(x)
        with torch.no_grad():
            return module(inputs.to(module.device)).flatten().float().cpu(), targets.flatten()

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        x = torch.linspace(self.low, self.high, self.count)
        predicted, true = self.curve(trainer, module, x)
        if trainer.state.stage == "test":
            at_probe, true_at_probe = self.curve(trainer, module, torch.tensor([self.probe]))
            rank_zero_info(f"prediction at x={self.probe}: {float(at_probe[0]):.5f} (true {float(true_at_probe[0]):.5f})")
        figure = Figure(figsize=(6, 4))
        axes = figure.subplots()
        axes.plot(x, true, label="true", color="grey", linewidth=3, alpha=0.5)
        axes.plot(x, predicted, label="model", color="tab:red")
        error = float((predicted - true).abs().max())
        axes.set(xlabel="x", ylabel="y", title=f"max |error| = {error:.4f}, step {trainer.global_step}")
        axes.legend()
        axes.grid(True)
        return figure


class DecisionSurfacePanel(PredictionPanel):
    """P(class 1) of a two-class module over the plane, the stage's points on top (a datamodule with
    ``to_features``, ``standardize_inputs`` and ``plane_points(split)``: ``PlaneDataModule``)."""

    tag = "decision_surface"

    def __init__(self, extent: float = 6.0, resolution: int = 51, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.extent, self.resolution = extent, resolution

    @staticmethod
    def probability(module: pl.LightningModule, datamodule: pl.LightningDataModule, points: torch.Tensor) -> torch.Tensor:
        """P(class 1) at plane points (N, 2)."""
        with torch.no_grad():
            scores = module(datamodule.standardize_inputs(datamodule.to_features(points)).to(module.device)).float().cpu()
        return probabilities(scores, module.hparams)[:, 1]

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        datamodule = trainer.datamodule
        axis = torch.linspace(-self.extent, self.extent, self.resolution)
        grid_x, grid_y = torch.meshgrid(axis, axis, indexing="xy")
        probability = self.probability(module, datamodule, torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1))
        points, labels = datamodule.plane_points("test" if trainer.state.stage == "test" else "val")
        figure = Figure(figsize=(5.5, 4.5))
        axes = figure.subplots()
        contour = axes.contourf(grid_x, grid_y, probability.reshape(grid_x.shape), levels=20, cmap="RdBu_r", vmin=0, vmax=1)
        figure.colorbar(contour, ax=axes, label="P(class 1)")
        for label, marker in ((0, "o"), (1, "+")):
            chosen = labels == label
            axes.scatter(points[chosen, 0], points[chosen, 1], marker=marker, color="k", s=14, label=f"class {label}")
        axes.set(xlim=(-self.extent, self.extent), ylim=(-self.extent, self.extent), xlabel="x1", ylabel="x2")
        axes.legend(loc="upper left")
        return figure


def linear_coefficients(module: pl.LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat weight and the bias of the module's one ``nn.Linear``, on the CPU."""
    layers = [layer for layer in module.net.modules() if isinstance(layer, torch.nn.Linear)]
    if len(layers) != 1:
        raise TypeError(f"{type(module).__name__} has {len(layers)} linear layers; this panel needs a linear model.")
    return layers[0].weight.detach().flatten().cpu(), layers[0].bias.detach().cpu()


class PolynomialPanel(pl.Callback):
    """The learned polynomial beside the target (console and TensorBoard text) and ``test/coefficient_error``, the
    largest |learned - target| over the weights and the bias."""

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        learned, data = torch.cat(linear_coefficients(pl_module)), trainer.datamodule
        target = torch.cat([data.weight.flatten(), data.bias.flatten()])
        pl_module.log("test/coefficient_error", float((learned - target).abs().max()))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        text = f"learned: {describe_polynomial(*linear_coefficients(pl_module))}\ntarget:  {trainer.datamodule.describe_target()}"
        rank_zero_info(text)
        if (writer := tensorboard_writer(trainer)) is not None:
            writer.add_text("polynomial", text.replace("\n", "  \n"), global_step=trainer.global_step)

    on_test_end = on_fit_end


class ParameterPathPanel(pl.Callback):
    """The path of (W, b) of a 1-input linear model over the contours of its validation loss."""

    def __init__(self, margin: float = 0.5) -> None:
        self.margin = margin
        self.path: list[tuple[float, float]] = []

    @staticmethod
    def point(pl_module: pl.LightningModule) -> tuple[float, float]:
        weight, bias = linear_coefficients(pl_module)
        return float(weight[0]), float(bias[0])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path = [self.point(pl_module)]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        self.path.append(self.point(pl_module))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (writer := tensorboard_writer(trainer)) is None or len(self.path) < 2:
            return
        inputs, targets = (t.cpu().flatten() for t in trainer.datamodule.splits["val"])
        path = torch.tensor(self.path)
        low, high = path.min(0).values - self.margin, path.max(0).values + self.margin
        weights, biases = torch.meshgrid(torch.linspace(low[0], high[0], 80), torch.linspace(low[1], high[1], 80), indexing="xy")
        loss = ((weights.unsqueeze(-1) * inputs + biases.unsqueeze(-1) - targets) ** 2).mean(-1)
        figure = Figure(figsize=(5.5, 4.5))
        axes = figure.subplots()
        figure.colorbar(axes.contour(weights, biases, loss.log10(), levels=20, cmap="viridis"), ax=axes, label="log10 MSE")
        axes.plot(path[:, 0], path[:, 1], color="tab:red", marker=".", markersize=2, label="SGD path")
        axes.set(xlabel="W", ylabel="b", title=f"{len(path) - 1} updates")
        axes.legend()
        writer.add_figure("train/parameter_path", figure, global_step=trainer.global_step, close=True)


class LossCurvePanel(pl.Callback):
    """Train and validation loss per epoch on a log scale, drawn at the end of fit."""

    def __init__(self) -> None:
        self.history: dict[str, list[tuple[int, float]]] = {"train/loss": [], "val/loss": []}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The epoch before's losses: the module logs them after the callbacks' epoch-end hooks
        for key, values in self.history.items():
            if key in trainer.callback_metrics and (not values or values[-1][0] != trainer.global_step):
                values.append((trainer.global_step, float(trainer.callback_metrics[key])))

    on_train_end = on_train_epoch_start  # the last epoch's losses

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (writer := tensorboard_writer(trainer)) is None or not self.history["train/loss"]:
            return
        figure = Figure(figsize=(6, 4))
        axes = figure.subplots()
        for key, values in self.history.items():
            if finite := [(step, value) for step, value in values if value > 0 and math.isfinite(value)]:
                axes.plot(*zip(*finite), label=key)
        axes.set(yscale="log", xlabel="optimizer update", ylabel="loss")
        axes.legend()
        axes.grid(True, which="both", alpha=0.3)
        writer.add_figure("train/loss_curve", figure, global_step=trainer.global_step, close=True)


class SklearnBaseline(pl.Callback):
    """scikit-learn's LogisticRegression (lbfgs, L2) on the same training rows: ``test/sklearn_acc``."""

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        (train_x, train_y), (test_x, test_y) = ((t.cpu().numpy() for t in trainer.datamodule.splits[s]) for s in ("train", "test"))
        pl_module.log("test/sklearn_acc", float(LogisticRegression(solver="lbfgs").fit(train_x, train_y).score(test_x, test_y)))
