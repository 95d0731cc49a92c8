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
    """Regression. Metrics per stage: ``mse``, ``rmse``, ``r2`` and ``max_abs_error``, in the target's units.

    Args:
        num_features, num_outputs, net: see ``TaskModule``; ``net`` by default ``nets.MLP`` (linear regression).
        zero_init: start from all-zero weights and biases (text 001's W = 0, b = 0).
        loss: ``mse``, or ``smooth_l1`` (PyTorch's polynomial example, which text 003 follows).
        **kwargs: ``optimizer``, ``scheduler``, ``updates_per_step``, ``compile`` of ``TaskModule``.

    The buffers ``target_mean``/``target_std`` (0 and 1 unless the datamodule standardises the target) are saved in the
    checkpoint: the net fits and the loss sees the standardised target; ``forward`` answers in the target's units.
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
        self.init_metrics(MetricCollection({"mse": MeanSquaredError(), "rmse": MeanSquaredError(squared=False),
                                            "r2": R2Score(), "max_abs_error": MaxAbsoluteError()}))
        self.register_buffer("target_mean", torch.zeros(num_outputs))
        self.register_buffer("target_std", torch.ones(num_outputs))

    def setup(self, stage: str) -> None:
        # After the datamodule's setup; a checkpoint being restored overwrites these with its own afterwards
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "target_mean", None) is not None:
            self.target_mean.copy_(datamodule.target_mean.reshape(self.target_mean.shape))
            self.target_std.copy_(datamodule.target_std.reshape(self.target_std.shape))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for name in ("target_mean", "target_std"):  # a checkpoint from before these buffers: 0 and 1
            checkpoint["state_dict"].setdefault(name, getattr(self, name).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.target_std + self.target_mean

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        scaled = self.net(inputs)
        loss = (F.mse_loss if self.hparams.loss == "mse" else F.smooth_l1_loss)(scaled, (targets - self.target_mean) / self.target_std)
        predictions = scaled * self.target_std + self.target_mean
        return loss, predictions.squeeze(-1), targets.squeeze(-1)  # torchmetrics' R2 wants 1-D for a single output
