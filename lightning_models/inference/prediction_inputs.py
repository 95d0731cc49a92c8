"""Raw inputs to the tensors a ``PredictionNet`` takes, a batch at a time: table rows (a CSV file, dicts, a DataFrame,
an array) by the checkpoint's column names and levels; images (files, a folder, a glob, PIL images, bytes, arrays)
in the training's channels and size. Errors are one line naming the row, column or file."""

from __future__ import annotations

import csv
import glob
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.csv_cells import FLOAT32_MAX, MISSING
from lightning_models.checks import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class PredictionInputError(ConfigError):
    """An input the model cannot take: a missing column, text in a number, an image that does not decode."""


def chunks(items: Sequence[Any] | Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- tables -----------------------------------------------------------------------------------------------------

def table_width(spec: dict[str, Any]) -> int:
    return sum(len(spec["categorical"].get(name, [])) or 1 for name in spec["features"])


def encode_rows(rows: list[dict[str, Any]], spec: dict[str, Any], first: int, source: str | None = None) -> np.ndarray:
    """Rows as dicts to the raw numeric columns: numbers parsed, categorical columns one-hot by the training levels, a
    missing cell (empty, NA, None, NaN) filled as in training (the spec's ``fill`` values or ``missing_level``).
    Errors name row ``first + i``, or the line of the CSV file ``source``."""
    features, levels = spec["features"], spec["categorical"]
    fill, missing_level = spec.get("fill") or {}, spec.get("missing_level")  # absent from older checkpoints
    encoded = np.zeros((len(rows), table_width(spec)), dtype=np.float32)
    for index, row in enumerate(rows):
        where = f"{source}, line {first + index + 2}" if source else f"row {first + index}"
        if not hasattr(row, "get"):
            raise PredictionInputError(f"{where}: {row!r} is not a row of named columns; expected a dict such as "
                                       f"{{{', '.join(repr(name) + ': ...' for name in features)}}}.")
        if missing := [name for name in features if name not in row]:
            raise PredictionInputError(f"{where}: no column {', '.join(map(repr, missing))}; expected the columns "
                                       f"{', '.join(features)} (others are ignored).")
        column = 0
        for name in features:
            value = row[name]
            if is_missing(value) and (name in fill or (name in levels and missing_level is not None)):
                value = fill.get(name, missing_level)
            if name in levels:
                text = str(value).strip()
                if text not in levels[name]:
                    raise PredictionInputError(f"{where}, column {name!r}: {value!r} is not a level seen in training "
                                               f"({', '.join(levels[name])}).")
                encoded[index, column + levels[name].index(text)] = 1.0
                column += len(levels[name])
                continue
            number = parse_number(value)
            if number is None:
                raise PredictionInputError(f"{where}, column {name!r}: {value!r} is not a number.")
            if abs(number) > FLOAT32_MAX:
                raise PredictionInputError(f"{where}, column {name!r}: {value!r} is beyond float32's range "
                                           f"(±{FLOAT32_MAX:.7g}), the dtype the model computes in.")
            encoded[index, column] = number
            column += 1
    return encoded


def is_missing(value: Any) -> bool:
    """An empty or NA cell (as in training: ``datamodules.csv_cells.MISSING``), None, or a NaN number."""
    if isinstance(value, str):
        return value.strip().lower() in MISSING
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def parse_number(value: Any) -> float | None:
    """The value as a float; None for anything else, NaN and inf (a finite float64 may still be beyond float32's range)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_array(batch: np.ndarray, spec: dict[str, Any], first: int) -> None:
    """A batch of an array of raw columns: every value a number within float32's range, else one line naming the row
    and column."""
    bad = ~np.isfinite(batch) | (np.abs(batch) > FLOAT32_MAX)
    if bad.any():
        row, column = (int(index) for index in np.argwhere(bad)[0])
        names = [name if level is None else f"{name}={level}" for name in spec["features"]
                 for level in spec["categorical"].get(name, [None])]
        name = names[column] if len(names) == batch.shape[1] else f"{column}"
        what = "NaN or inf" if not np.isfinite(batch[row, column]) else f"{float(batch[row, column])!r}, beyond float32's range"
        raise PredictionInputError(f"the array holds {what} at row {first + row}, column {name!r}; expected finite "
                                   f"numbers within ±{FLOAT32_MAX:.7g} (float32, the dtype the model computes in).")


def table_batches(inputs: Any, spec: dict[str, Any], batch_size: int) -> Iterator[tuple[list[Any], torch.Tensor]]:
    width = table_width(spec)
    if isinstance(inputs, (str, Path)) and Path(inputs).suffix == ".npy":
        inputs = np.load(inputs, mmap_mode="r")
    if isinstance(inputs, (str, Path)):
        yield from csv_batches(Path(inputs), spec, batch_size)
        return
    if isinstance(inputs, dict):
        inputs = [inputs]
    if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):  # a pandas DataFrame
        inputs = inputs.to_dict("records")
    if isinstance(inputs, (np.ndarray, torch.Tensor)) or (isinstance(inputs, list) and inputs and not hasattr(inputs[0], "get")):
        array = inputs if isinstance(inputs, np.ndarray) else np.asarray(inputs.cpu() if isinstance(inputs, torch.Tensor) else inputs)
        array = array.reshape(-1, 1) if array.ndim == 1 and width == 1 else array
        if array.ndim != 2 or array.shape[1] != width:
            encoded = " (categorical ones one-hot, as in training)" if spec["categorical"] else ""
            raise PredictionInputError(f"an array of shape {tuple(array.shape)}; expected (rows, {width}): the columns "
                                       f"{', '.join(spec['features'])} in that order{encoded}.")
        for start in range(0, len(array), batch_size):  # a batch at a time: a memory-mapped .npy stays on disk
            try:
                batch = np.array(array[start : start + batch_size], dtype=np.float64)  # checked before float32 could overflow
            except (TypeError, ValueError):
                raise PredictionInputError(f"an array of {array.dtype} that does not convert to numbers; expected the "
                                           "columns' values as numbers.") from None
            check_array(batch, spec, start)
            yield list(range(start, start + len(batch))), torch.from_numpy(batch.astype(np.float32))
        return
    first = 0
    for chunk in chunks(inputs, batch_size):
        yield list(range(first, first + len(chunk))), torch.from_numpy(encode_rows(chunk, spec, first))
        first += len(chunk)


def csv_batches(path: Path, spec: dict[str, Any], batch_size: int) -> Iterator[tuple[list[Any], torch.Tensor]]:
    """A CSV file with a header row, read a batch at a time (delimiter sniffed as for training)."""
    if not path.is_file():
        what = "a folder, and this model takes table rows" if path.is_dir() else "no such file"
        raise PredictionInputError(f"{path}: {what}; expected a CSV file with a header row or a .npy array of the columns.")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(handle, dialect=dialect)
        if reader.fieldnames:
            reader.fieldnames = [name.strip() for name in reader.fieldnames]
        first = 0
        for chunk in chunks(reader, batch_size):
            yield list(range(first, first + len(chunk))), torch.from_numpy(encode_rows(chunk, spec, first, str(path)))
            first += len(chunk)


# --- images -----------------------------------------------------------------------------------------------------

def image_files(inputs: str | Path) -> list[str]:
    """An image file, every image file under a folder (sorted), or a glob pattern's matches."""
    path = Path(inputs)
    if path.is_dir():
        files = sorted(str(file) for file in path.rglob("*") if file.suffix.lower() in IMAGE_SUFFIXES and not
                       any(part.startswith(".") for part in file.relative_to(path).parts))
    elif path.is_file():
        files = [str(path)]
    else:
        files = sorted(glob.glob(str(inputs), recursive=True))
    if not files:
        raise PredictionInputError(f"{inputs}: no image file there; expected an image file, a folder of images or a "
                                   f"glob pattern ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    return files


def to_image_tensor(item: Any, spec: dict[str, Any], name: str) -> torch.Tensor:
    """One image (a file path, encoded bytes, a PIL image) as uint8 ``(C, H, W)`` in the training's channels and size."""
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms.v2 import functional as TF

    channels, height, width = spec["image_shape"]
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        image = TF.pil_to_tensor(item.convert("L" if channels == 1 else "RGB"))
    else:
        try:
            data = torch.frombuffer(bytearray(item), dtype=torch.uint8) if isinstance(item, bytes) else read_file(str(item))
            image = decode_image(data, mode=mode)
        except (RuntimeError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "an empty file"
            raise PredictionInputError(f"{name}: not an image that decodes ({reason}).") from None
    if tuple(image.shape[-2:]) != (height, width):
        image = TF.resize(image, [height, width], antialias=True)
    return image


def image_batches(inputs: Any, spec: dict[str, Any], batch_size: int) -> Iterator[tuple[list[Any], torch.Tensor]]:
    channels, height, width = spec["image_shape"]
    if isinstance(inputs, (str, Path)) and Path(inputs).suffix == ".npy":
        inputs = np.load(inputs, mmap_mode="r")
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        array = inputs if isinstance(inputs, torch.Tensor) else None
        dtype = array.dtype if array is not None else inputs.dtype
        if dtype not in (np.uint8, torch.uint8):
            raise PredictionInputError(f"an image array of dtype {dtype}; expected uint8 pixels 0-255, (N, H, W) or (N, C, H, W).")
        shape = tuple(inputs.shape)
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[1] != channels):
            raise PredictionInputError(f"an image array of shape {shape}; expected (N, {height}, {width}) or "
                                       f"(N, {channels}, {height}, {width}) uint8.")
        for start in range(0, shape[0], batch_size):
            batch = torch.as_tensor(np.ascontiguousarray(inputs[start : start + batch_size]))
            batch = batch.unsqueeze(1) if batch.ndim == 3 else batch
            if batch.shape[1] != channels:
                raise PredictionInputError(f"images with {batch.shape[1]} channel(s); the model takes {channels}.")
            if tuple(batch.shape[-2:]) != (height, width):
                from torchvision.transforms.v2 import functional as TF

                batch = TF.resize(batch, [height, width], antialias=True)
            yield list(range(start, start + len(batch))), batch
        return
    items = image_files(inputs) if isinstance(inputs, (str, Path)) else inputs
    items = [items] if hasattr(items, "convert") or isinstance(items, bytes) else items
    expanded = [file for item in items for file in (image_files(item) if isinstance(item, (str, Path)) else [item])]
    first = 0
    for chunk in chunks(expanded, batch_size):
        ids = [item if isinstance(item, str) else first + i for i, item in enumerate(chunk)]
        yield ids, torch.stack([to_image_tensor(item, spec, str(identifier)) for item, identifier in zip(chunk, ids)])
        first += len(chunk)
