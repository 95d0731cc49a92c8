"""Classification with any injected net; the source texts' MSE-on-one-hot as an option."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lightning_models.base import NetFactory, TaskModule
from lightning_models.checks import check_choice, check_fraction
from lightning_models.nets import MLP

OUTPUT_ACTIVATIONS = {
    "identity": lambda logits: logits,
    "sigmoid": torch.sigmoid,
    "softmax": lambda logits: torch.softmax(logits, dim=-1),
    # Text 000's logistic regression: a sigmoid, then a softmax over the squashed values.
    "sigmoid_softmax": lambda logits: torch.softmax(torch.sigmoid(logits), dim=-1),
}


class ClassificationModule(TaskModule):
    """Multiclass classifier. Metrics: ``acc`` (the share of rows right) and ``f1``, the macro F1, per stage.

    Args:
        num_features, num_outputs, net: see ``TaskModule``; ``num_outputs`` is the number of classes,
            ``net`` by default ``nets.MLP`` (no hidden layers: logistic regression).
        loss: ``cross_entropy`` (on logits), or ``mse_onehot``: the source texts' mean squared error
            between ``output_activation(logits)`` and one-hot targets.
        output_activation: applied before ``mse_onehot``: ``softmax``, ``sigmoid``,
            ``sigmoid_softmax`` (text 000) or ``identity``. Ignored by ``cross_entropy``.
        label_smoothing: of the ``cross_entropy`` training loss, in [0, 1) (validation and test
            losses are plain cross-entropy, comparable across configs).
        **kwargs: ``optimizer``, ``scheduler``, ``updates_per_step``, ``compile`` of ``TaskModule``.
    """

    def __init__(
        self,
        num_features: int,
        num_outputs: int,
        net: NetFactory = MLP,
        loss: Literal["cross_entropy", "mse_onehot"] = "cross_entropy",
        output_activation: Literal["identity", "sigmoid", "softmax", "sigmoid_softmax"] = "softmax",
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_features, num_outputs, net, **kwargs)
        check_fraction("label_smoothing", label_smoothing)
        check_choice("loss", loss, ("cross_entropy", "mse_onehot"))
        check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
        metrics = {
            "acc": MulticlassAccuracy(num_classes=num_outputs, average="micro"),
            "f1": MulticlassF1Score(num_classes=num_outputs, average="macro"),
        }
        self.init_metrics(MetricCollection(metrics))
        self.one_hot_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores: logits for cross-entropy, the squashed outputs for ``mse_onehot``."""
        logits = self.net(x)
        if self.hparams.loss == "mse_onehot":
            return OUTPUT_ACTIVATIONS[self.hparams.output_activation](logits)
        return logits

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        scores = self(inputs)
        if self.hparams.loss == "cross_entropy":
            smoothing = self.hparams.label_smoothing if self.training else 0.0
            loss = F.cross_entropy(scores, targets, label_smoothing=smoothing)
        else:
            loss = F.mse_loss(scores, self.one_hot(targets).to(scores.dtype))
        return loss, scores, targets

    def one_hot(self, targets: torch.Tensor) -> torch.Tensor:
        """One-hot targets, built once per batch tensor (full-batch runs reuse one tensor for every update)."""
        if self.one_hot_cache is None or self.one_hot_cache[0] is not targets:
            self.one_hot_cache = (targets, F.one_hot(targets, self.hparams.num_outputs).float())
        return self.one_hot_cache[1]
