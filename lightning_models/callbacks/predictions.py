"""``Predictions``, the one CSV layout of every command that predicts (docs/predict.md), and the callback that writes it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from lightning_models.checks import ConfigError


class PredictionOutputError(ConfigError):
    """An answer that is NaN or infinite: refused naming the row, never written beside a label."""


def refuse_non_finite(ids: list[Any], values: np.ndarray, columns: list[str]) -> None:
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, column = bad[0]
        where = f"row {ids[row]}" if isinstance(ids[row], (int, np.integer)) else ids[row]
        raise PredictionOutputError(f"{where}: the model's answer is not a finite number ({columns[column]}={values[row, column]}), "
                                    "so it gets no prediction: is the input far outside the training data's range, or are the "
                                    "checkpoint's weights NaN or infinite?")


@dataclass
class Predictions:
    """One answer per input: ``outputs`` (class probabilities, or values in the target's units) named by ``columns``,
    an autoencoder's ``codes``, known ``targets``; ``rows()``: one dict per input."""

    ids: list[Any]
    outputs: np.ndarray
    columns: list[str]
    class_names: list[str] | None = None
    codes: np.ndarray | None = None
    targets: np.ndarray | None = None

    def __post_init__(self) -> None:  # every answer is formed here, so none is ever given beside a NaN
        refuse_non_finite(self.ids, self.outputs, [f"p({name})" for name in self.class_names or []] or self.columns)
        if self.codes is not None:
            refuse_non_finite(self.ids, self.codes, self.header()[-self.codes.shape[1]:])

    @property
    def labels(self) -> list[str]:
        return [self.class_names[index] for index in self.outputs.argmax(axis=1)] if self.class_names else []

    @property
    def probability(self) -> np.ndarray:
        return self.outputs.max(axis=1)

    def header(self) -> list[str]:
        names = self.class_names
        targets = [] if self.targets is None else ["target"] if names else [f"target_{c}" for c in self.columns]
        answer = ["predicted", "probability", *[f"p({name})" for name in names]] if names else self.columns
        return ["id", *targets, *answer, *[f"code_{i}" for i in range(0 if self.codes is None else self.codes.shape[1])]]

    def values(self) -> list[list[Any]]:
        """One list per input, in ``header()``'s order."""
        blocks = [[[identifier] for identifier in self.ids]]
        if self.targets is not None:
            targets = self.targets.reshape(len(self.ids), -1)
            blocks.append([[self.class_names[int(t)]] for t in targets[:, 0]] if self.class_names else targets.tolist())
        if self.class_names:
            blocks.append([[name, p] for name, p in zip(self.labels, self.probability.tolist())])
        blocks += [self.outputs.tolist()] + ([self.codes.tolist()] if self.codes is not None else [])
        return [sum(parts, []) for parts in zip(*blocks)]

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.header(), values)) for values in self.values()]

    def __len__(self) -> int:
        return len(self.ids)


class PredictionWriter(BasePredictionWriter):
    """``predict_step``'s answers to ``path`` as CSV, batch by batch, with each row's inputs; renamed into place once
    complete (``scripts/train.py predict``: ``<run>/predictions-<split>.csv``)."""

    def __init__(self, path: str = "predictions.csv") -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self.partial, self.handle = self.path.with_name(self.path.name + ".partial"), None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:  # each rank predicts its own share: one file would miss the others'
            raise ConfigError("predict writes one CSV from one process; run it with --trainer.devices 1.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle, self.written, data = open(self.partial, "w", newline=""), 0, trainer.datamodule
        self.writer, self.spec = csv.writer(self.handle), data.state_dict().get("prediction_inputs") or {}
        describe = getattr(data, "input_columns", None)
        self.inputs = describe(getattr(data, "predict_split", "test")) if describe else ([], None)

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, batch_indices: Any,
                           batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        labelled = isinstance(batch, (tuple, list)) and len(batch) > 1
        outputs = prediction.detach().float().cpu().numpy().reshape(len(prediction), -1)
        names = self.spec.get("class_names") or getattr(trainer.datamodule, "class_names", None)
        names = [str(name) for name in names] if names is not None and len(names) == outputs.shape[1] else None
        codes = pl_module.encode(batch[0] if labelled else batch).detach().float().cpu().numpy() if hasattr(pl_module, "encode") else None
        predictions = Predictions(list(range(self.written, self.written + len(outputs))), outputs,
                                  names or self.spec.get("outputs") or [f"y{i}" for i in range(outputs.shape[1])], names,
                                  codes, batch[1].cpu().numpy() if labelled else None)
        header, (input_names, inputs) = predictions.header(), self.inputs
        extra = [i for i, name in enumerate(input_names) if name not in header]  # an autoencoder's inputs are its targets
        if not self.written:
            self.writer.writerow(header + [input_names[i] for i in extra])
        for n, row in zip(predictions.ids, predictions.values()):
            self.writer.writerow(row + [f"{value:.6g}" if isinstance(value, float) else value for value in (inputs[n][i] for i in extra)])
        self.written += len(predictions)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.handle is not None:  # no half-written predictions left behind
            self.handle.close()
            self.partial.unlink(missing_ok=True)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.handle.close()
        self.handle = None
        self.partial.replace(self.path)
        print(f"predictions: {self.path} ({self.written} rows)")
