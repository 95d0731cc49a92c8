"""Panels for tabular tasks: observed-vs-predicted, confusion matrix, latent code."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix

from lightning_models.callbacks.panel import PredictionPanel, class_names


class ObservedVsPredictedPanel(PredictionPanel):
    """The y-y plot of a regression: predicted against observed, with the diagonal y = x."""

    tag = "observed_vs_predicted"

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        observed, predicted = rows["targets"].flatten(), rows["predictions"].flatten()
        figure = Figure(figsize=(5, 5))
        axes = figure.subplots()
        axes.scatter(observed, predicted, alpha=0.6)
        low, high = float(min(observed.min(), predicted.min())), float(max(observed.max(), predicted.max()))
        axes.plot([low, high], [low, high], color="grey", linestyle="--", label="y = x")
        axes.set(xlabel="observed", ylabel="predicted", title=f"step {trainer.global_step}")
        axes.grid(True)
        axes.legend()
        return figure


class ConfusionMatrixPanel(PredictionPanel):
    """The confusion matrix of a classifier, rows true class, columns predicted, with class names."""

    tag = "confusion_matrix"

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        count = rows["predictions"].shape[-1]
        # Drawn on rank zero only: a synchronising compute would wait for the other ranks forever.
        matrix = MulticlassConfusionMatrix(num_classes=count, sync_on_compute=False)
        matrix.update(rows["predictions"], rows["targets"])
        figure, _ = matrix.plot(labels=class_names(trainer, count))
        figure.set_size_inches(max(5, count * 0.8), max(5, count * 0.8))
        return figure


class LatentCodePanel(PredictionPanel):
    """The 2-D code of every row of the datamodule's ``labelled_inputs()``, coloured by class.

    Needs a module with ``encode(x)`` (e.g. ``AutoencoderModule``); codes of more than two
    dimensions show their first two.
    """

    tag = "latent_code"

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        inputs, labels = trainer.datamodule.labelled_inputs()
        with torch.no_grad():
            codes = module.encode(inputs.to(module.device)).float().cpu()
        names = class_names(trainer, int(labels.max()) + 1)
        figure = Figure(figsize=(5, 5))
        axes = figure.subplots()
        for index, name in enumerate(names):
            chosen = labels == index
            axes.scatter(codes[chosen, 0], codes[chosen, 1 % codes.shape[1]], alpha=0.6, label=name)
        axes.set(xlabel="code 1", ylabel="code 2", title=f"latent code, step {trainer.global_step}")
        axes.grid(True)
        axes.legend()
        return figure
