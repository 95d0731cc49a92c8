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
    """Counts the rows of each class a stage saw (``rows``: the first training epoch this fit runs, the last validation,
    the last test; after ``run``'s fit those are the best checkpoint's) and the classes predicted on the validation and
    test rows (``predicted``), as lists indexed by class. ``run`` adds it to every run; only classification batches
    (``class_labels``) are counted, so a regression leaves it empty. Under DDP each rank counts its shard and the counts
    are summed over ranks (a sampler's padding rows, if any, count too).
    """

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.predicted: dict[str, list[int]] = {}
        self.running: dict[str, torch.Tensor] = {}
        self.classes = 0

    def count(self, key: str, labels: torch.Tensor) -> None:
        # index_add_ into a tensor of fixed size on the batch's device: no host sync per batch (bincount would need one)
        if key not in self.running:
            self.running[key] = torch.zeros(self.classes, dtype=torch.long, device=labels.device)
        self.running[key].index_add_(0, labels, torch.ones_like(labels, dtype=torch.long))

    def add(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, targets: Any, scores: Any = None) -> None:
        if not class_labels(targets, scores):
            return
        if not self.classes:
            known = scores.shape[1] if scores is not None else getattr(trainer.datamodule, "num_outputs", None)
            self.classes = int(known or pl_module.hparams.get("num_outputs") or 0)
        if self.classes < 2:
            return
        self.count(stage, targets)
        if scores is not None:
            self.count(f"predicted/{stage}", scores.argmax(dim=-1))

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

    # The validation hooks serve the test stage too (trainer.testing tells them apart).
    on_test_epoch_start = on_validation_epoch_start
    on_test_batch_end = on_validation_batch_end
    on_test_epoch_end = on_validation_epoch_end

    def record(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        """What metrics.json and the summary show: the class names, the rows and predictions per split, the training
        rows' majority class (the first of equals) and the majority-class baseline, the accuracy of always answering it,
        on every split; None without training rows counted (not a classification)."""
        if "train" not in self.rows:
            return None
        names = class_names(trainer, self.classes)
        majority = max(range(self.classes), key=lambda index: (self.rows["train"][index], -index))
        rows, predicted = ({split: found[split] for split in SPLITS if split in found} for found in (self.rows, self.predicted))
        return {"names": names, "rows": rows, "predicted": predicted, "majority_class": names[majority],
                "majority_baseline_acc": {split: counts[majority] / sum(counts) for split, counts in rows.items() if sum(counts)}}
