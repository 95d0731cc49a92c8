"""Autoencoder: reconstruct the inputs through a small code (seed 000: 4-2-4 on iris)."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torchmetrics import MeanSquaredError, MetricCollection

from lightning_models.base import TaskModule
from lightning_models.nets import AutoEncoder


class AutoencoderModule(TaskModule):
    """Reconstruction with MSE. Metric: ``recon_mse`` per stage, in the units of the targets.

    The datamodule gives ``(inputs, targets)``; for iris the targets are the raw measurements
    while the inputs may be standardised, so ``recon_mse`` is in centimetres squared.

    Args:
        num_features: input size; num_outputs: reconstruction size (both linked from the datamodule).
        latent_size: size of the code; ``encode(x)`` returns it.
        hidden_sizes, activation: encoder layers (the decoder mirrors them).
        latent_activation: activation of the code (seed 000: ``sigmoid``).
        **kwargs: optimizer settings of ``TaskModule``.
    """

    def __init__(
        self,
        num_features: int,
        num_outputs: int | None = None,
        latent_size: int = 2,
        hidden_sizes: list[int] | None = None,
        activation: str = "relu",
        latent_activation: str = "sigmoid",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.net = AutoEncoder(num_features, latent_size, hidden_sizes or [], activation, latent_activation, num_outputs)
        self.init_metrics(MetricCollection({"recon_mse": MeanSquaredError()}))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        reconstructions = self(inputs)
        return F.mse_loss(reconstructions, targets), reconstructions, targets
