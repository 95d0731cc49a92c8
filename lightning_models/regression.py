"""Regression of one or more continuous targets with any injected net (default: a linear model)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.nn import functional as F
from torchmetrics import MeanSquaredError, Metric, MetricCollection, R2Score

from lightning_models.base import NetFactory, TaskModule
from lightning_models.checks import check_choice
from lightning_models.nets import MLP


class MaxAbsoluteError(Metric):
    """The largest |prediction - target| seen (text 001 checks its fit this way)."""

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
        num_features, num_outputs, net: see ``TaskModule``; ``net`` by default ``nets.MLP`` with no
            hidden layers: linear regression.
        zero_init: start from all-zero weights and biases (text 001's W = 0, b = 0).
        loss: ``mse``, or ``smooth_l1`` (PyTorch's polynomial example, which text 003 follows).
        **kwargs: ``optimizer``, ``scheduler``, ``updates_per_step`` of ``TaskModule``.

    Example: ``RegressionModule(3, 1, net=functools.partial(MLP, hidden_sizes=[6], activation="sigmoid"))``.
    """

    def __init__(
        self,
        num_features: int,
        num_outputs: int = 1,
        net: NetFactory = MLP,
        zero_init: bool = False,
        loss: Literal["mse", "smooth_l1"] = "mse",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_features, num_outputs, net, **kwargs)
        check_choice("loss", loss, ("mse", "smooth_l1"))
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
