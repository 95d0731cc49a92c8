"""Predictions as CSV, one row per example: ``scripts/train.py predict`` (this callback) and ``scripts/evaluate.py``."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from lightning_models.checks import ConfigError


def scores(module: pl.LightningModule, outputs: torch.Tensor) -> torch.Tensor:
    """The module's outputs as written: class probabilities for a cross-entropy classifier, else as they are."""
    outputs = outputs.detach().float().cpu()
    return outputs.softmax(dim=1) if module.hparams.get("loss") == "cross_entropy" else outputs


def is_classification(outputs: torch.Tensor, targets: torch.Tensor | None) -> bool:
    return outputs.ndim == 2 and outputs.shape[1] > 1 and (targets is None or targets.dtype == torch.int64)


def header(outputs: torch.Tensor, targets: torch.Tensor | None) -> list[str]:
    if is_classification(outputs, targets):
        return ["row", "target", "predicted", "target_name", "predicted_name", "probability"]
    columns = outputs.reshape(len(outputs), -1).shape[1]
    return ["row", *[f"target_{i}" for i in range(columns)], *[f"predicted_{i}" for i in range(columns)]]


def rows(outputs: torch.Tensor, targets: torch.Tensor | None, names: Sequence[str] | None, first: int = 0) -> list[list]:
    """CSV rows for one batch: classification ``row, target, predicted, target_name, predicted_name,
    probability`` (class names where the datamodule has them); otherwise ``row, target_*, predicted_*``.
    ``targets`` is ``None`` for unlabelled inputs (the target cells stay empty)."""
    if is_classification(outputs, targets):
        labels, best = outputs.argmax(1).tolist(), outputs.max(1).values.tolist()
        name = (lambda i: names[i]) if names is not None and len(names) == outputs.shape[1] else str
        truth = targets.tolist() if targets is not None else [None] * len(labels)
        return [[first + i, "" if t is None else t, p, "" if t is None else name(t), name(p), f"{s:.6g}"]
                for i, (t, p, s) in enumerate(zip(truth, labels, best))]
    flat = outputs.reshape(len(outputs), -1).tolist()
    truth = targets.reshape(len(targets), -1).tolist() if targets is not None else [[""] * len(flat[0])] * len(flat)
    return [[first + i, *[t if t == "" else f"{t:.6g}" for t in target], *[f"{v:.6g}" for v in predicted]]
            for i, (target, predicted) in enumerate(zip(truth, flat))]


def input_columns(datamodule: Any, split: str) -> tuple[list[str], list[list[Any]] | None]:
    """The datamodule's ``input_columns(split)`` (the raw inputs or file names beside each prediction), if it has them."""
    describe = getattr(datamodule, "input_columns", None)
    return describe(split) if describe is not None else ([], None)


def with_inputs(rows: list[list], inputs: list[list[Any]] | None, first: int) -> list[list]:
    """Each CSV row followed by its example's input columns."""
    if inputs is None:
        return rows
    return [row + [f"{value:.6g}" if isinstance(value, float) else value for value in inputs[first + i]] for i, row in enumerate(rows)]


class PredictionWriter(BasePredictionWriter):
    """Writes ``trainer.predict``'s outputs to ``path`` as CSV, batch by batch (``rows`` gives the columns).

    ``scripts/train.py predict`` adds it and points it into the checkpoint's run folder
    (``predictions-<split>.csv``); the datamodule's ``predict_split`` chooses the split.
    """

    def __init__(self, path: str = "predictions.csv") -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")  # renamed to ``path`` once complete
        self.handle: Any = None
        self.written = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:  # each rank predicts its own share: one file would miss the others'
            raise ConfigError("predict writes one CSV from one process; run it with --trainer.devices 1.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle, self.written = open(self.partial, "w", newline=""), 0
        self.inputs = input_columns(trainer.datamodule, getattr(trainer.datamodule, "predict_split", "test"))

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        targets = batch[1].cpu() if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        outputs = scores(pl_module, prediction)
        if not (finite := torch.isfinite(outputs.reshape(len(outputs), -1)).all(dim=1)).all():
            self.handle.close()  # the partial file stays partial: no label is written beside a NaN
            raise ConfigError(f"row {self.written + int((~finite).nonzero()[0])}: the model's answer is not a finite number; "
                              "no predictions were written (check the inputs and the checkpoint's weights).")
        writer = csv.writer(self.handle)
        if self.written == 0:
            writer.writerow(header(outputs, targets) + self.inputs[0])
        names = getattr(trainer.datamodule, "class_names", None)
        writer.writerows(with_inputs(rows(outputs, targets, names, self.written), self.inputs[1], self.written))
        self.written += len(outputs)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.handle.close()
        self.partial.replace(self.path)
        print(f"predictions: {self.path} ({self.written} rows)")
