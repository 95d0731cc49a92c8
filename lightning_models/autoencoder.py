"""Autoencoder: reconstruct the inputs through a small code (text 000: 4-2-4 on iris)."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torchmetrics import MeanSquaredError, MetricCollection

from lightning_models.base import NetFactory, TaskModule
from lightning_models.nets import AutoEncoder


class AutoencoderModule(TaskModule):
    """Reconstruction with MSE. Metric per stage: ``recon_mse``, in the targets' units (iris: the raw measurements,
    while the inputs may be standardised).

    Args:
        num_features, num_outputs: input and reconstruction sizes (linked from the datamodule).
        net: ``net(num_features, num_outputs)`` with an ``encode(x)`` method: ``nets.AutoEncoder`` (default) or alike.
        **kwargs: ``optimizer``, ``scheduler``, ``updates_per_step``, ``compile`` of ``TaskModule``.
    """

    def __init__(self, num_features: int, num_outputs: int, net: NetFactory = AutoEncoder, **kwargs: Any) -> None:
        super().__init__(num_features, num_outputs, net, **kwargs)
        self.init_metrics(MetricCollection({"recon_mse": MeanSquaredError()}))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        reconstructions = self(inputs)
        return F.mse_loss(reconstructions, targets), reconstructions, targets
