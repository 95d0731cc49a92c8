"""Raw inputs (table rows, images) to the tensors a ``PredictionNet`` takes, a batch at a time, checked in one-line errors."""

from __future__ import annotations

import csv
import glob
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.csv_cells import FLOAT32_MAX, MISSING
from lightning_models.checks import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
Batches = Iterator[tuple[list[Any], torch.Tensor]]


class PredictionInputError(ConfigError):
    """An input the model cannot take: a missing column, text in a number, an image that does not decode."""


def chunks(items: Any, size: int, first: int = 0) -> Iterator[tuple[list[int], list[Any]]]:
    """``(positions, items)`` a batch at a time."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield list(range(first, first + len(chunk))), chunk
        first += len(chunk)


def column_names(spec: dict[str, Any]) -> list[str]:
    """A table's encoded columns: a categorical column as one ``name=level`` column per level."""
    levels = spec["categorical"]
    return [f"{name}={level}" if name in levels else name for name in spec["features"] for level in levels.get(name, [None])]


def encode_rows(rows: list[dict[str, Any]], spec: dict[str, Any], first: int, source: str | None = None) -> np.ndarray:
    """Rows of named cells to the raw numeric columns: categorical cells one-hot by the training levels, a missing cell
    filled as in training (``fill``, ``missing_level``)."""
    features, levels = spec["features"], spec["categorical"]
    fill = {**dict.fromkeys(levels if spec.get("missing_level") is not None else [], spec.get("missing_level")), **(spec.get("fill") or {})}
    encoded = np.zeros((len(rows), len(column_names(spec))), dtype=np.float32)
    for index, row in enumerate(rows):
        where = f"{source}, line {first + index + 2}" if source else f"row {first + index}"
        if not hasattr(row, "get"):
            raise PredictionInputError(f"{where}: {row!r} is not a row of named columns.")
        if missing := [name for name in features if name not in row]:
            raise PredictionInputError(f"{where}: no column {', '.join(map(repr, missing))}; expected the columns "
                                       f"{', '.join(features)} (others are ignored).")
        column = 0
        for name in features:
            value = row[name]
            if name in fill and (value is None or (value.strip().lower() in MISSING if isinstance(value, str) else
                                                   isinstance(value, (float, np.floating)) and math.isnan(value))):
                value = fill[name]
            if name in levels:
                if str(value).strip() not in levels[name]:
                    raise PredictionInputError(f"{where}, column {name!r}: {value!r} is not a level seen in training "
                                               f"({', '.join(levels[name])}).")
                encoded[index, column + levels[name].index(str(value).strip())] = 1.0
                column += len(levels[name])
                continue
            try:
                number = math.nan if isinstance(value, bool) else float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number):
                raise PredictionInputError(f"{where}, column {name!r}: {value!r} is not a number.")
            if abs(number) > FLOAT32_MAX:
                raise PredictionInputError(f"{where}, column {name!r}: {value!r} is beyond float32's range "
                                           f"(±{FLOAT32_MAX:.7g}), the dtype the model computes in.")
            encoded[index, column] = number
            column += 1
    return encoded


def array_batches(array: Any, spec: dict[str, Any], batch_size: int) -> Batches:
    """An array of the raw columns, a batch at a time (a memory-mapped .npy stays on disk), each value checked."""
    names = column_names(spec)
    array = array.reshape(-1, 1) if array.ndim == 1 and len(names) == 1 else array
    if array.ndim != 2 or array.shape[1] != len(names):
        raise PredictionInputError(f"an array of shape {tuple(array.shape)}; expected (rows, {len(names)}): the columns "
                                   f"{', '.join(names)}.")
    for start in range(0, len(array), batch_size):
        try:  # float64 first: checked before float32 could overflow
            batch = np.array(array[start : start + batch_size], dtype=np.float64)
        except (TypeError, ValueError):
            raise PredictionInputError(f"an array of {array.dtype}; expected numbers.") from None
        if (bad := ~np.isfinite(batch) | (np.abs(batch) > FLOAT32_MAX)).any():
            row, column = np.argwhere(bad)[0]
            value = batch[row, column]
            what = f"{float(value)!r}, beyond float32's range" if np.isfinite(value) else "NaN or inf"
            raise PredictionInputError(f"the array holds {what} at row {start + row}, column {names[column]!r}.")
        yield list(range(start, start + len(batch))), torch.from_numpy(batch.astype(np.float32))


def csv_rows(path: Path) -> Iterator[dict[str, str]]:
    """A CSV file with a header row (delimiter sniffed as for training), read lazily."""
    if not path.is_file():
        raise PredictionInputError(f"{path}: {'a folder' if path.is_dir() else 'no such file'}; expected a CSV file with a "
                                   "header row or a .npy array of the columns.")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            dialect: Any = csv.Sniffer().sniff(handle.read(4096), delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        handle.seek(0)
        reader = csv.DictReader(handle, dialect=dialect)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        yield from reader


def table_batches(inputs: Any, spec: dict[str, Any], batch_size: int) -> Batches:
    source = str(inputs) if isinstance(inputs, (str, Path)) else None
    inputs = csv_rows(Path(inputs)) if source else inputs
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.cpu().numpy()
    if isinstance(inputs, list) and inputs and not hasattr(inputs[0], "get"):
        inputs = np.asarray(inputs)
    if isinstance(inputs, np.ndarray):
        yield from array_batches(inputs, spec, batch_size)
        return
    inputs = [inputs] if isinstance(inputs, dict) else inputs.to_dict("records") if hasattr(inputs, "to_dict") else inputs
    for ids, chunk in chunks(inputs, batch_size):
        yield ids, torch.from_numpy(encode_rows(chunk, spec, ids[0], source))


def image_files(inputs: str | Path) -> list[str]:
    """An image file, every image file under a folder (sorted, hidden folders skipped), or a glob pattern's matches."""
    path = Path(inputs)
    if path.is_dir():
        files = sorted(str(file) for file in path.rglob("*") if file.suffix.lower() in IMAGE_SUFFIXES and not
                       any(part.startswith(".") for part in file.relative_to(path).parts))
    else:
        files = [str(path)] if path.is_file() else sorted(glob.glob(str(inputs), recursive=True))
    if not files:
        raise PredictionInputError(f"{inputs}: no image file there; expected an image file, a folder of images or a glob.")
    return files


def resized(images: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    size = list(spec["image_shape"][1:])
    return images if list(images.shape[-2:]) == size else TF.resize(images, size, antialias=True)


def to_image_tensor(item: Any, spec: dict[str, Any], name: str) -> torch.Tensor:
    """One image (a file path, encoded bytes, a PIL image) as uint8 ``(C, H, W)`` in the training's channels and size."""
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms.v2 import functional as TF

    gray = spec["image_shape"][0] == 1
    if hasattr(item, "convert"):  # a PIL image
        return resized(TF.pil_to_tensor(item.convert("L" if gray else "RGB")), spec)
    try:
        data = torch.frombuffer(bytearray(item), dtype=torch.uint8) if isinstance(item, bytes) else read_file(str(item))
        image = decode_image(data, mode=ImageReadMode.GRAY if gray else ImageReadMode.RGB)
    except (RuntimeError, ValueError) as error:
        reason = (str(error).strip().splitlines() or ["an empty file"])[0]
        raise PredictionInputError(f"{name}: not an image that decodes ({reason}).") from None
    return resized(image, spec)


def image_batches(inputs: Any, spec: dict[str, Any], batch_size: int) -> Batches:
    channels, height, width = spec["image_shape"]
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        middle = {4: (channels,), 3: () if channels == 1 else None}.get(inputs.ndim, False)  # the channel axis, if any
        if inputs.dtype not in (np.uint8, torch.uint8) or middle != tuple(inputs.shape[1:-2]):
            raise PredictionInputError(f"an image array of {inputs.dtype} {tuple(inputs.shape)}; expected uint8 pixels "
                                       f"(N, {height}, {width}) or (N, {channels}, {height}, {width}).")
        for start in range(0, len(inputs), batch_size):
            batch = torch.as_tensor(np.ascontiguousarray(inputs[start : start + batch_size]))
            yield list(range(start, start + len(batch))), resized(batch.unsqueeze(1) if batch.ndim == 3 else batch, spec)
        return
    items = image_files(inputs) if isinstance(inputs, (str, Path)) else inputs
    items = [items] if hasattr(items, "convert") or isinstance(items, bytes) else items
    expanded = [file for item in items for file in (image_files(item) if isinstance(item, (str, Path)) else [item])]
    for positions, chunk in chunks(expanded, batch_size):
        ids = [item if isinstance(item, str) else position for item, position in zip(chunk, positions)]
        yield ids, torch.stack([to_image_tensor(item, spec, str(identifier)) for item, identifier in zip(chunk, ids)])
