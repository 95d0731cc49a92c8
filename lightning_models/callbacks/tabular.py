"""Panels for tabular tasks: observed-vs-predicted, confusion matrix, latent code."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix

from lightning_models.callbacks.panel import PredictionPanel, class_names


def scatter_figure(xlabel: str, ylabel: str, title: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(True)
    return figure, axes


class ObservedVsPredictedPanel(PredictionPanel):
    """The y-y plot of a regression: predicted against observed, with the diagonal y = x."""

    tag = "observed_vs_predicted"

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        observed, predicted = rows["targets"].flatten(), rows["predictions"].flatten()
        figure, axes = scatter_figure("observed", "predicted", f"step {trainer.global_step}")
        axes.scatter(observed, predicted, alpha=0.6)
        low, high = float(min(observed.min(), predicted.min())), float(max(observed.max(), predicted.max()))
        axes.plot([low, high], [low, high], color="grey", linestyle="--", label="y = x")
        axes.legend()
        return figure


class ConfusionMatrixPanel(PredictionPanel):
    """A classifier's confusion matrix: rows the true class, columns the predicted, by name."""

    tag = "confusion_matrix"

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        count = rows["predictions"].shape[-1]
        matrix = MulticlassConfusionMatrix(num_classes=count, sync_on_compute=False)  # rank 0 alone: a sync would hang
        matrix.update(rows["predictions"], rows["targets"])
        figure, _ = matrix.plot(labels=class_names(trainer, count))
        figure.set_size_inches(max(5, count * 0.8), max(5, count * 0.8))
        return figure


class LatentCodePanel(PredictionPanel):
    """The 2-D code (the first two dimensions of a wider one) of the datamodule's ``labelled_inputs()``, coloured by
    class; needs a module with ``encode(x)`` (``AutoencoderModule``)."""

    tag = "latent_code"

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        inputs, labels = trainer.datamodule.labelled_inputs()
        with torch.no_grad():
            codes = module.encode(inputs.to(module.device)).float().cpu()
        figure, axes = scatter_figure("code 1", "code 2", f"latent code, step {trainer.global_step}")
        for index, name in enumerate(class_names(trainer, int(labels.max()) + 1)):
            chosen = labels == index
            axes.scatter(codes[chosen, 0], codes[chosen, 1 % codes.shape[1]], alpha=0.6, label=name)
        axes.legend()
        return figure
