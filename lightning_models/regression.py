"""Regression of one or more continuous targets with an MLP (a linear model without hidden layers)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.nn import functional as F
from torchmetrics import MeanSquaredError, Metric, MetricCollection, R2Score

from lightning_models.base import TaskModule
from lightning_models.checks import check_choice
from lightning_models.nets import MLP


class MaxAbsoluteError(Metric):
    """The largest |prediction - target| seen (seed 001 checks its fit this way)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("value", default=torch.tensor(0.0), dist_reduce_fx="max")

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.value = torch.maximum(self.value, (predictions - targets).abs().max())

    def compute(self) -> torch.Tensor:
        return self.value


class RegressionModule(TaskModule):
    """Regression (MSE loss by default). Metrics: ``mse``, ``rmse``, ``r2`` and ``max_abs_error`` per stage.

    Args:
        num_features, num_outputs: input and target sizes (linked from the datamodule by the CLI).
        hidden_sizes: hidden layer widths; ``[]`` gives linear regression.
        activation, negative_slope, output_activation: see ``nets.MLP``.
        zero_init: start from all-zero weights and biases (seed 001's W = 0, b = 0).
        loss: ``mse``, or ``smooth_l1`` (PyTorch's polynomial example, which seed 003 follows).
        **kwargs: optimizer settings of ``TaskModule`` (``optimizer``, ``lr``, ``updates_per_step``...).

    Example: ``RegressionModule(num_features=3, num_outputs=1, hidden_sizes=[6], activation="sigmoid")``.
    """

    def __init__(
        self,
        num_features: int,
        num_outputs: int = 1,
        hidden_sizes: list[int] | None = None,
        activation: str = "relu",
        negative_slope: float = 0.01,
        output_activation: str = "identity",
        zero_init: bool = False,
        loss: Literal["mse", "smooth_l1"] = "mse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("loss", loss, ("mse", "smooth_l1"))
        self.net = MLP(num_features, num_outputs, hidden_sizes or [], activation, negative_slope, output_activation)
        if zero_init:
            for parameter in self.net.parameters():
                torch.nn.init.zeros_(parameter)
        metrics = {"mse": MeanSquaredError(), "rmse": MeanSquaredError(squared=False), "r2": R2Score(),
                   "max_abs_error": MaxAbsoluteError()}
        self.init_metrics(MetricCollection(metrics))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        predictions = self(inputs)
        loss = (F.mse_loss if self.hparams.loss == "mse" else F.smooth_l1_loss)(predictions, targets)
        # torchmetrics' R2 wants 1-D tensors for a single output.
        return loss, predictions.squeeze(-1), targets.squeeze(-1)
