"""Regression of one or more continuous targets with an MLP (a linear model without hidden layers)."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torchmetrics import MeanSquaredError, MetricCollection, R2Score

from lightning_models.base import TaskModule
from lightning_models.nets import MLP


class RegressionModule(TaskModule):
    """MSE regression. Metrics: ``mse``, ``rmse`` and ``r2`` per stage.

    Args:
        num_features, num_outputs: input and target sizes (linked from the datamodule by the CLI).
        hidden_sizes: hidden layer widths; ``[]`` gives linear regression.
        activation, negative_slope, output_activation: see ``nets.MLP``.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.net = MLP(num_features, num_outputs, hidden_sizes or [], activation, negative_slope, output_activation)
        self.init_metrics(
            MetricCollection({"mse": MeanSquaredError(), "rmse": MeanSquaredError(squared=False), "r2": R2Score()})
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        predictions = self(inputs)
        loss = F.mse_loss(predictions, targets)
        # torchmetrics' R2 wants 1-D tensors for a single output.
        return loss, predictions.squeeze(-1), targets.squeeze(-1)
