"""``load(checkpoint)``: a trained model from its checkpoint alone, raw inputs in, ``Predictions`` out."""

from __future__ import annotations

import csv
import math
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.progress import track
from torch import nn

from lightning_models.callbacks.predictions import Predictions
from lightning_models.checks import ConfigError
from lightning_models.inference.prediction_inputs import PredictionInputError, image_batches, image_files, table_batches
from lightning_models.training.checkpoints import CheckpointError, choose_checkpoint, load_module, read_checkpoint
from lightning_models.util import import_class

OLD_FEATURE_MAPS = {"powers_1_to_4": "lightning_models.nets.Powers", "quadrant_one_hot": "lightning_models.nets.QuadrantOneHot"}


def check_device(device: str, option: str = "device=") -> None:
    """A one-line ``ConfigError`` for a device this machine lacks (``option``: how the caller names the setting)."""
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{option}{device}: not a device name; expected cpu, cuda, cuda:N or mps.") from None
    count = torch.cuda.device_count() if wanted.type == "cuda" and torch.cuda.is_available() else 0
    if wanted.type in ("cuda", "mps") and not (count or wanted.type == "mps" and torch.backends.mps.is_available()):
        raise ConfigError(f"{option}{device}: no {wanted.type.upper()} device here; use {option}cpu.")
    if wanted.type == "cuda" and (wanted.index or 0) >= count:
        raise ConfigError(f"{option}{device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}.")


class Preprocess(nn.Module):
    """Raw numbers to model inputs as in training: a table's feature map and standardisation; an image's uint8 pixels
    scaled to [0, 1] and normalised per channel."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        config = spec.get("feature_map") or (spec.get("transform") and {"class_path": OLD_FEATURE_MAPS[spec["transform"]]})
        self.image = spec["kind"] == "image"
        self.feature_map = import_class(config["class_path"])(**config.get("init_args") or {}) if config else nn.Identity()
        shape = (1, -1, 1, 1) if self.image else (1, -1)
        for name in ("mean", "std"):
            value = spec.get(name) if spec.get("mean") is not None else None
            self.register_buffer(name, None if value is None else torch.tensor(value, dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).div(255) if self.image else self.feature_map(x)
        return x if self.mean is None else (x - self.mean) / self.std


class PredictionNet(nn.Module):
    """Preprocessing, then the module's ``predict_step`` (class probabilities for a classifier); ``code=True``: the
    autoencoder's code instead."""

    def __init__(self, module: pl.LightningModule, spec: dict[str, Any], code: bool = False) -> None:
        super().__init__()
        self.preprocess, self.module, self.code = Preprocess(spec), module, code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        return self.module.encode(x) if self.code else self.module.predict_step(x, 0)


def load(checkpoint: str | Path, device: str = "cpu") -> Predictor:
    """A ``Predictor`` for a checkpoint of ``scripts/train.py``, or for a run folder's best checkpoint."""
    check_device(device)
    chosen = choose_checkpoint(checkpoint)
    if chosen.outside:
        warnings.warn(chosen.line(), stacklevel=2)
    spec = next((value["prediction_inputs"] for value in read_checkpoint(chosen.path).values()
                 if isinstance(value, dict) and isinstance(value.get("prediction_inputs"), dict)), None)
    if spec is None:
        raise CheckpointError(f"{chosen.path}: the checkpoint does not record its inputs (no 'prediction_inputs'); use "
                              "lightning_models.training.checkpoints.load_module(path) on inputs its datamodule prepares.")
    return Predictor(load_module(chosen.path, map_location=device), spec, chosen.path)


class Predictor:
    """Predicts on raw inputs (docs/predict.md: rows, CSV files, arrays; image files, folders, globs, PIL, bytes)."""

    def __init__(self, module: pl.LightningModule, spec: dict[str, Any], checkpoint: Path | None = None) -> None:
        self.module, self.spec, self.checkpoint = module.eval(), spec, checkpoint
        self.device = next(module.parameters(), torch.zeros(0)).device
        self.net = PredictionNet(module, spec).to(self.device).eval()
        self.encoder = PredictionNet(module, spec, code=True).to(self.device).eval() if hasattr(module, "encode") else None
        self.image, self.class_names = spec["kind"] == "image", spec.get("class_names")
        self.columns = self.class_names or spec.get("outputs") or []

    def predict(self, inputs: Any, batch_size: int = 256) -> Predictions:
        parts = [self.answer(ids, batch) for ids, batch in self.batches(inputs, batch_size)]
        if not parts:
            raise PredictionInputError("no inputs to predict: the input is empty.")
        codes = None if parts[0].codes is None else np.concatenate([part.codes for part in parts])
        return Predictions([i for part in parts for i in part.ids], np.concatenate([part.outputs for part in parts]),
                           parts[0].columns, self.class_names, codes)

    @torch.inference_mode()
    def answer(self, ids: list[Any], batch: torch.Tensor) -> Predictions:
        """The predictions for one encoded batch of ``batches``."""
        batch = batch.to(self.device)
        outputs = self.net(batch).float().cpu().numpy()
        codes = self.encoder(batch).float().cpu().numpy() if self.encoder is not None else None
        columns = list(self.columns) if len(self.columns) == outputs.shape[1] else [f"y{i}" for i in range(outputs.shape[1])]
        return Predictions(ids, outputs, columns, self.class_names, codes)

    def batches(self, inputs: Any, batch_size: int = 256) -> Any:
        """``(ids, raw tensor)`` per batch, read, checked and encoded a batch at a time."""
        if isinstance(inputs, (str, Path)) and Path(inputs).suffix == ".npy":
            if not Path(inputs).is_file():
                raise PredictionInputError(f"{inputs}: no such file; expected a .npy array of the columns.")
            inputs = np.load(inputs, mmap_mode="r")  # read a batch at a time
        return (image_batches if self.image else table_batches)(inputs, self.spec, batch_size)


def write_predictions(predictor: Predictor, inputs: Any, handle: TextIO, batch_size: int, progress: bool = True) -> int:
    """Predict ``inputs`` batch by batch into ``handle`` as CSV; returns the number of rows written."""
    writer, written, path = csv.writer(handle), 0, isinstance(inputs, (str, Path))
    npy = path and Path(inputs).suffix == ".npy" and Path(inputs).is_file()
    total = (len(image_files(inputs)) if path and predictor.image else len(np.load(inputs, mmap_mode="r")) if npy
             else None if path or not hasattr(inputs, "__len__") else len(inputs))  # for the bar
    for ids, batch in track(predictor.batches(inputs, batch_size), "predicting", total=total and math.ceil(total / batch_size),
                            console=Console(stderr=True), disable=not (progress and sys.stderr.isatty()), transient=True):
        predictions = predictor.answer(ids, batch)
        writer.writerows([predictions.header()] * (not written) + predictions.values())
        written += len(predictions)
    if not written:
        raise PredictionInputError(f"{inputs}: no inputs in it to predict.")
    return written
