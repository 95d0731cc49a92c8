"""A trained model from its checkpoint alone: raw rows, image files or arrays in, named answers out.

    from lightning_models import load
    predictor = load("lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt")
    predictor.predict([{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5}])

The checkpoint carries what prediction needs of the training datamodule (its ``state_dict``: feature names,
categorical levels, standardisation, class names, image shape and normalisation), so neither the training data
nor the config is read. ``PredictionNet`` is the whole path from raw numbers to the answer; exports and the server
use it too, so all of them answer alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from lightning_models.checks import ConfigError
from lightning_models.inference.prediction_inputs import PredictionInputError, image_batches, image_files, table_batches
from lightning_models.training.checkpoints import CheckpointError, choose_checkpoint, load_module, read_checkpoint


class PredictionOutputError(PredictionInputError):
    """An answer that is NaN or infinite (an input far outside the training data's scale, or weights that are not
    finite): refused in one line naming the row, never written beside a label."""


def refuse_non_finite(ids: list[Any], values: np.ndarray, columns: list[str]) -> None:
    values = values.reshape(len(values), -1)
    finite = np.isfinite(values)
    if finite.all():
        return
    row, column = (int(index) for index in np.argwhere(~finite)[0])
    name = columns[column] if column < len(columns) else f"y{column}"
    where = f"row {ids[row]}" if isinstance(ids[row], (int, np.integer)) else str(ids[row])
    raise PredictionOutputError(f"{where}: the model's answer is not a finite number ({name}={values[row, column]}), so it "
                                "gets no prediction: is the input far outside the training data's range, or are the "
                                "checkpoint's weights NaN or infinite?")


def check_device(device: str, option: str = "device=") -> None:
    """A one-line ``ConfigError`` for a device this machine does not have (``option``: how the caller names the
    setting, ``--device `` on a command line), before any weight is moved there."""
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{option}{device}: not a device name; expected cpu, cuda, cuda:N or mps.") from None
    if wanted.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}{device}: no CUDA device here; use {option}cpu.")
    if wanted.type == "cuda" and wanted.index is not None and wanted.index >= torch.cuda.device_count():
        raise ConfigError(f"{option}{device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    if wanted.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option}{device}: no MPS device here; use {option}cpu.")


def quadrant_one_hot(points: torch.Tensor) -> torch.Tensor:
    """One-hot of the quadrant of (x1, x2) (datamodules.synthetic.quadrant_features)."""
    right, up = points[:, 0:1] > 0, points[:, 1:2] > 0
    return torch.cat([right & up, ~right & up, ~right & ~up, right & ~up], dim=1).to(points.dtype)


TRANSFORMS = {  # the datamodules' fixed feature maps from raw columns to model inputs, by the name in the checkpoint
    None: lambda x: x,
    "powers_1_to_4": lambda x: torch.cat([x**power for power in range(1, 5)], dim=1),
    "quadrant_one_hot": quadrant_one_hot,
}


class Preprocess(nn.Module):
    """Raw numbers to model inputs as the training datamodule made them: a table's feature map and
    standardisation; an image's uint8 pixels scaled to [0, 1] and normalised per channel."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.image, self.transform = spec["kind"] == "image", spec.get("transform")
        if spec.get("mean") is None:
            self.mean = self.std = None
        else:
            shape = (1, -1, 1, 1) if self.image else (1, -1)
            self.register_buffer("mean", torch.tensor(spec["mean"], dtype=torch.float32).view(shape))
            self.register_buffer("std", torch.tensor(spec["std"], dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).div(255) if self.image else TRANSFORMS[self.transform](x)
        return x if self.mean is None else (x - self.mean) / self.std


class PredictionNet(nn.Module):
    """The answer for raw numbers (a table's encoded columns, or uint8 images ``(N, C, H, W)``): preprocessing,
    the trained module, then class probabilities for a cross-entropy classifier. ``code=True``: the autoencoder's
    code instead. Plain ``nn.Module``: the ONNX, torch.export and numpy exports are this net."""

    def __init__(self, module: pl.LightningModule, spec: dict[str, Any], code: bool = False) -> None:
        super().__init__()
        self.preprocess, self.module, self.code = Preprocess(spec), module, code
        self.softmax = spec.get("class_names") is not None and module.hparams.get("loss", "cross_entropy") == "cross_entropy"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        if self.code:
            return self.module.encode(x)
        outputs = self.module(x)
        return outputs.softmax(dim=-1) if self.softmax else outputs


@dataclass
class Predictions:
    """What ``Predictor.predict`` returns: one answer per input, in the inputs' order.

    ``ids``: row numbers or file names; ``outputs``: class probabilities ``(N, classes)`` or predicted values
    ``(N, outputs)`` in the target's units (reconstructions for the autoencoder); ``columns``: their names;
    ``codes``: the autoencoder's codes. ``labels``/``probability``: each input's class and its probability.
    ``rows()``: one dict per input, as ``scripts/predict.py`` writes them.
    """

    ids: list[Any]
    outputs: np.ndarray
    columns: list[str]
    class_names: list[str] | None = None
    codes: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # every answer is formed here: Predictor, an export and the server alike
        refuse_non_finite(self.ids, self.outputs, self.columns if self.class_names is None else
                          [f"p({name})" for name in self.class_names])
        if self.codes is not None:
            refuse_non_finite(self.ids, self.codes, [f"code_{i}" for i in range(self.codes.shape[1])])

    @property
    def labels(self) -> list[str]:
        return [self.class_names[index] for index in self.outputs.argmax(axis=1)] if self.class_names else []

    @property
    def probability(self) -> np.ndarray:
        return self.outputs.max(axis=1)

    def header(self) -> list[str]:
        """The names of ``values()``'s columns: ``id``, then the class and its probability and every class's
        probability, or the predicted values by name; ``code_i`` for an autoencoder's code."""
        answer = ["predicted", "probability", *[f"p({name})" for name in self.class_names]] if self.class_names else self.columns
        return ["id", *answer, *([f"code_{i}" for i in range(self.codes.shape[1])] if self.codes is not None else [])]

    def values(self) -> list[list[Any]]:
        """One list per input, in ``header()``'s order (built a column block at a time: predict.py writes these)."""
        blocks = [[[identifier] for identifier in self.ids]]
        if self.class_names:
            best = self.outputs.argmax(axis=1)
            names = np.array(self.class_names, dtype=object)[best]
            blocks.append([[name, probability] for name, probability in zip(names, self.outputs.max(axis=1).tolist())])
        blocks.append(self.outputs.tolist())
        if self.codes is not None:
            blocks.append(self.codes.tolist())
        return [sum(parts, []) for parts in zip(*blocks)]

    def rows(self) -> list[dict[str, Any]]:
        header = self.header()
        return [dict(zip(header, values)) for values in self.values()]

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    def __repr__(self) -> str:
        shown = self.rows()[:10]
        lines = [", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in row.items())
                 for row in shown]
        more = f"\n... {len(self) - len(shown)} more" if len(self) > len(shown) else ""
        return f"Predictions({len(self)}):\n" + "\n".join(lines) + more


def inputs_of(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The datamodule's ``prediction_inputs`` that Lightning saved with its ``state_dict``, if any."""
    return next((value["prediction_inputs"] for value in checkpoint.values()
                 if isinstance(value, dict) and isinstance(value.get("prediction_inputs"), dict)), None)


def load(checkpoint: str | Path, device: str = "cpu") -> Predictor:
    """A ``Predictor`` for a checkpoint written by ``scripts/train.py`` (loaded with ``weights_only=True``), or for a run
    folder: the checkpoint its ``metrics.json`` reports the test metrics of (the best), from the folder's own
    ``checkpoints/``; a recorded file outside the folder, used only when the folder has none, comes with a warning."""
    check_device(device)
    chosen = choose_checkpoint(checkpoint)
    if chosen.outside:
        warnings.warn(chosen.line(), stacklevel=2)
    path = chosen.path
    spec = inputs_of(read_checkpoint(path))
    if spec is None:
        raise CheckpointError(f"{path}: the checkpoint does not record its inputs (written before the template stored them, "
                              "or by a datamodule whose state_dict() has no 'prediction_inputs'); predict anyway with "
                              "lightning_models.training.checkpoints.load_module(path) on inputs prepared as the training datamodule "
                              "prepares them (docs/predict.md).")
    return Predictor(load_module(path, map_location=device), spec, path)


class Predictor:
    """Predicts on raw inputs with a trained module and its datamodule's ``prediction_inputs`` (``load``).

    ``predict(inputs)`` takes, for a table: a CSV path, a list of dicts or one dict (columns by name, in any order,
    extra columns ignored), a pandas DataFrame, or an array of the raw columns in order; for images: an image file,
    a folder, a glob pattern, a PIL image, a list of these, or a uint8 array ``(N, H, W)``/``(N, C, H, W)``.
    """

    def __init__(self, module: pl.LightningModule, spec: dict[str, Any], checkpoint: Path | None = None) -> None:
        self.module, self.spec, self.checkpoint = module.eval(), spec, checkpoint
        self.device = next(module.parameters(), torch.zeros(0)).device
        self.net = PredictionNet(module, spec).to(self.device).eval()
        self.encoder = PredictionNet(module, spec, code=True).to(self.device).eval() if hasattr(module, "encode") else None
        self.image = spec["kind"] == "image"
        self.class_names = spec.get("class_names")
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
        """The predictions for one encoded batch (``batches``)."""
        batch = batch.to(self.device)
        outputs = self.net(batch).float().cpu().numpy()
        codes = self.encoder(batch).float().cpu().numpy() if self.encoder is not None else None
        columns = list(self.columns) if len(self.columns) == outputs.shape[1] else [f"y{i}" for i in range(outputs.shape[1])]
        return Predictions(ids, outputs, columns, self.class_names, codes)

    def batches(self, inputs: Any, batch_size: int = 256) -> Iterator[tuple[list[Any], torch.Tensor]]:
        """``(ids, raw tensor)`` per batch: read, checked and encoded batch by batch (bounded memory)."""
        return (image_batches if self.image else table_batches)(inputs, self.spec, batch_size)

    def count(self, inputs: Any) -> int | None:
        """How many inputs there are, where that is known without reading them all (for a progress bar)."""
        if isinstance(inputs, (str, Path)):
            if self.image:
                return len(image_files(inputs))
            if Path(inputs).suffix == ".npy":
                return len(np.load(inputs, mmap_mode="r"))
            return None
        return len(inputs) if hasattr(inputs, "__len__") else None
