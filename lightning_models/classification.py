"""Classification with any injected net; the source texts' MSE-on-one-hot as an option."""

from __future__ import annotations

from collections.abc import Mapping
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
    "sigmoid_softmax": lambda logits: torch.softmax(torch.sigmoid(logits), dim=-1),  # text 000's logistic regression
}


def outputs_are_logits(hparams: Mapping[str, Any]) -> bool:
    """The one answer to "is this classifier's output a logit?": yes under cross-entropy, ClassificationModule's default
    (also where ``hparams`` name no loss); ``mse_onehot`` outputs are already its ``output_activation``'s."""
    return hparams.get("loss", "cross_entropy") == "cross_entropy"


def answer_activation(hparams: Mapping[str, Any]) -> str:
    """The activation between the raw net and the class probabilities (an export writes it as layers)."""
    return "softmax" if outputs_are_logits(hparams) else hparams.get("output_activation", "softmax")


def probabilities(outputs: torch.Tensor, hparams: Mapping[str, Any]) -> torch.Tensor:
    """Class probabilities from a classifier's outputs (its ``forward``)."""
    return outputs.softmax(dim=-1) if outputs_are_logits(hparams) else outputs


class ClassificationModule(TaskModule):
    """Multiclass classifier. Metrics per stage: ``acc`` (the share of rows right) and ``f1`` (macro).

    Args:
        num_features, num_outputs, net: see ``TaskModule``; ``num_outputs`` is the number of classes, ``net`` by
            default ``nets.MLP`` (no hidden layers: logistic regression).
        loss: ``cross_entropy`` (on logits), or ``mse_onehot``: the source texts' mean squared error between
            ``output_activation(logits)`` and one-hot targets.
        output_activation: for ``mse_onehot``: ``softmax``, ``sigmoid``, ``sigmoid_softmax`` (text 000) or ``identity``.
        label_smoothing: of the ``cross_entropy`` training loss, in [0, 1) (validation and test losses stay plain).
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
        self.init_metrics(MetricCollection({"acc": MulticlassAccuracy(num_classes=num_outputs, average="micro"),
                                            "f1": MulticlassF1Score(num_classes=num_outputs, average="macro")}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores: logits for cross-entropy, the activation's outputs for ``mse_onehot``."""
        logits = self.net(x)
        return OUTPUT_ACTIVATIONS[self.hparams.output_activation](logits) if self.hparams.loss == "mse_onehot" else logits

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        scores = self(inputs)
        if self.hparams.loss == "cross_entropy":
            loss = F.cross_entropy(scores, targets, label_smoothing=self.hparams.label_smoothing if self.training else 0.0)
        else:
            loss = F.mse_loss(scores, F.one_hot(targets, self.hparams.num_outputs).float().to(scores.dtype))
        return loss, scores, targets

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return probabilities(super().predict_step(batch, batch_idx), self.hparams)
