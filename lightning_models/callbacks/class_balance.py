"""Rows of each class per split, and the classes the model predicted: what accuracy is to be compared with."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from lightning_models.callbacks.panel import class_names

SPLITS = ("train", "val", "test")


def class_labels(targets: Any, scores: Any = None) -> bool:
    """A classification batch: one integer label per row, beside scores of two classes or more where there are any."""
    if not isinstance(targets, torch.Tensor) or targets.ndim != 1 or targets.is_floating_point() or targets.dtype == torch.bool:
        return False
    return scores is None or (isinstance(scores, torch.Tensor) and scores.ndim == 2 and scores.shape[1] >= 2)


class ClassBalance(pl.Callback):
    """Rows per class a stage saw (``rows``: the fit's first training epoch, the last validation and test) and classes
    predicted on them (``predicted``), summed over ranks; only classification batches (``class_labels``). ``run`` adds it."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.predicted: dict[str, list[int]] = {}
        self.running: dict[str, torch.Tensor] = {}
        self.classes = 0

    def add(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, targets: Any, scores: Any = None) -> None:
        if not class_labels(targets, scores):
            return
        if not self.classes:
            known = scores.shape[1] if scores is not None else getattr(trainer.datamodule, "num_outputs", None)
            self.classes = int(known or pl_module.hparams.get("num_outputs") or 0)
        if self.classes < 2:
            return
        for key, labels in ((stage, targets), (f"predicted/{stage}", None if scores is None else scores.argmax(dim=-1))):
            if labels is not None and key not in self.running:  # on the batch's device: no host sync per batch
                self.running[key] = torch.zeros(self.classes, dtype=torch.long, device=labels.device)
            if labels is not None:  # index_add_, not bincount, which would need a host sync
                self.running[key].index_add_(0, labels, torch.ones_like(labels, dtype=torch.long))

    def finish(self, trainer: pl.Trainer, stage: str) -> None:
        for key, into in ((stage, self.rows), (f"predicted/{stage}", self.predicted)):
            if key in self.running:
                into[stage] = trainer.strategy.reduce(self.running.pop(key), reduce_op="sum").tolist()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows, self.predicted, self.running = {}, {}, {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if "train" not in self.rows and isinstance(batch, (tuple, list)) and len(batch) > 1:
            self.add(trainer, pl_module, "train", batch[1])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "train" not in self.rows:
            self.finish(trainer, "train")

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stage = "test" if trainer.testing else "val"
        self.running.pop(stage, None)
        self.running.pop(f"predicted/{stage}", None)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking:
            return
        stage = "test" if trainer.testing else "val"
        if isinstance(outputs, dict) and "targets" in outputs:  # TaskModule's evaluate: scores and targets
            self.add(trainer, pl_module, stage, outputs["targets"], outputs.get("predictions"))
        elif isinstance(batch, (tuple, list)) and len(batch) > 1:
            self.add(trainer, pl_module, stage, batch[1])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.finish(trainer, "test" if trainer.testing else "val")

    # The validation hooks serve the test stage too (trainer.testing tells them apart)
    on_test_epoch_start = on_validation_epoch_start
    on_test_batch_end = on_validation_batch_end
    on_test_epoch_end = on_validation_epoch_end

    def record(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        """For metrics.json: names, rows and predictions per split, the training majority class (the first of equals)
        and the accuracy of always answering it; None without training rows counted."""
        if "train" not in self.rows:
            return None
        names = class_names(trainer, self.classes)
        majority = max(range(self.classes), key=lambda index: (self.rows["train"][index], -index))
        rows, predicted = ({split: found[split] for split in SPLITS if split in found} for found in (self.rows, self.predicted))
        return {"names": names, "rows": rows, "predicted": predicted, "majority_class": names[majority],
                "majority_baseline_acc": {split: counts[majority] / sum(counts) for split, counts in rows.items() if sum(counts)}}
