"""Panels for image classifiers: sample grid, misclassified grid, per-class accuracy."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from torchmetrics.functional.classification import multiclass_accuracy

from lightning_models.callbacks.panel import PredictionPanel, class_names, tensorboard_writer


def image_grid(trainer: pl.Trainer, images: torch.Tensor, titles: list[str], columns: int = 8) -> Figure:
    """A grid of (N, 1 or 3, H, W) images, the datamodule's normalisation (``denormalize``) undone, each titled."""
    denormalize = getattr(trainer.datamodule, "denormalize", None)
    images = denormalize(images) if denormalize is not None else images
    rows = max(1, -(-len(images) // columns))
    figure = Figure(figsize=(columns * 1.6, rows * 1.8))
    for index, axis in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axis.axis("off")
        if index < len(images):
            image = images[index].clamp(0, 1)
            if image.shape[0] == 1:
                axis.imshow(image.squeeze(0), cmap="gray", vmin=0, vmax=1)
            else:
                axis.imshow(image.permute(1, 2, 0))  # matplotlib wants channels last
            axis.set_title(titles[index], fontsize=7)
    figure.tight_layout()
    return figure


class MisclassifiedImagesPanel(PredictionPanel):
    """The first ``max_images`` misclassified images of the stage in dataset order, titled ``"<true>, pred=<predicted>"``
    (``captions``: the titles of the last grid)."""

    tag = "misclassified"

    def __init__(self, max_images: int = 32, every_n_epochs: int = 1) -> None:
        super().__init__(every_n_epochs=every_n_epochs, max_rows=max_images)
        self.captions: list[str] = []

    def collect(self, batch: Any, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        predicted = outputs["predictions"].argmax(dim=-1)
        wrong = predicted != outputs["targets"]
        return {"images": batch[0][wrong], "predicted": predicted[wrong], "targets": outputs["targets"][wrong]}

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        targets = rows["targets"]
        classes = module.hparams.get("num_outputs") or (int(targets.max()) + 1 if len(targets) else 1)  # none wrong: empty
        names = class_names(trainer, classes)
        shown = zip(targets[: self.max_rows].tolist(), rows["predicted"][: self.max_rows].tolist())
        self.captions = [f"{names[target]}, pred={names[predicted]}" for target, predicted in shown]
        return image_grid(trainer, rows["images"][: self.max_rows], self.captions)


class PerClassAccuracyPanel(PredictionPanel):
    """Each class's accuracy as a bar, the class names on the axis."""

    tag = "per_class_accuracy"

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        count = rows["predictions"].shape[-1]
        accuracy = multiclass_accuracy(rows["predictions"], rows["targets"], num_classes=count, average=None)
        figure = Figure(figsize=(7, 4))
        axes = figure.subplots()
        axes.bar(range(count), accuracy.numpy())
        axes.set_xticks(range(count), class_names(trainer, count), rotation=45, ha="right")
        axes.set(ylim=(0, 1), ylabel="accuracy", title=f"per-class accuracy, step {trainer.global_step}")
        axes.grid(True, axis="y", alpha=0.3)
        figure.tight_layout()
        return figure


class SampleImagesPanel(pl.Callback):
    """The first ``count`` validation images titled with their class, logged once at fit start."""

    def __init__(self, count: int = 32) -> None:
        self.count = count

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (writer := tensorboard_writer(trainer)) is None:
            return
        images, labels = [], []
        for batch_images, batch_labels in trainer.datamodule.val_dataloader():
            images.append(batch_images.cpu())
            labels.append(batch_labels.cpu())
            if sum(map(len, labels)) >= self.count:
                break
        images, labels = torch.cat(images)[: self.count], torch.cat(labels)[: self.count]
        names = class_names(trainer, int(getattr(trainer.datamodule, "num_outputs", labels.max() + 1)))
        writer.add_figure("data/sample_images", image_grid(trainer, images, [names[label] for label in labels.tolist()]),
                          global_step=0, close=True)
