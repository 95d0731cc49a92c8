"""The cells of a CSV file: rows, float32-range numbers, one-hot levels, and the ``missing`` choices."""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.impute import SimpleImputer

from lightning_models.checks import RELATIVE, ConfigError

MISSING = {"", "na", "nan", "null", "none", "n/a"}  # any case, spaces around
MISSING_LEVEL = "(missing)"
Missing = Literal["refuse", "drop", "impute"]
FLOAT32_MAX = float(np.finfo(np.float32).max)  # a larger number would become inf


def read_rows(path: Path, delimiter: str | None = None) -> tuple[list[str], list[list[str]]]:
    """The header and the non-empty rows; ``delimiter=None``: csv.Sniffer's pick."""
    if not path.is_file():
        raise ConfigError(f"{Path(path).absolute()}: no such file; path must name a CSV file with a header row ({RELATIVE}).")
    with open(path, newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: a byte-order mark is not a column name
        lines = list(itertools.islice(handle, 6))
        for sample in ["".join(lines), lines[0]] if not delimiter and len(lines) > 1 else []:
            with contextlib.suppress(csv.Error):
                delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
                break
        if not delimiter and len(lines) > 1:
            raise ConfigError(f"{path}: cannot tell which character separates the columns; set delimiter (e.g. delimiter: ';').")
        handle.seek(0)
        table = list(csv.reader(handle, delimiter=delimiter or ","))
    if len(table) < 2:
        raise ConfigError(f"{path}: expected a header row and at least one data row.")
    header, rows = [name.strip() for name in table[0]], [row for row in table[1:] if row]
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ConfigError(f"{path}: line {line} has {len(row)} cells; the header has {len(header)}.")
    return header, rows


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def numbers(path: Path, name: str, cells: list[str]) -> list[float | None]:
    """Each cell's value, None for text, NaN or inf; beyond float32's range is a ConfigError."""
    parsed = []
    for line, cell in enumerate(cells, start=2):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and abs(value) > FLOAT32_MAX:
            raise ConfigError(f"{path}: line {line}, column {name!r}: {cell.strip()} is beyond float32's range "
                              f"(±{FLOAT32_MAX:.7g}), the dtype the model computes in; rescale the column (e.g. other units).")
        parsed.append(value if math.isfinite(value) else None)
    return parsed


def one_hot(values: list[str | None], levels: list[str]) -> np.ndarray:
    """(rows, levels) float32; a value that is no level (or None) is all zeros."""
    return (np.array(values, dtype=object)[:, None] == np.array(levels, dtype=object)[None, :]).astype(np.float32)


def refuse_missing(path: Path, missing: dict[str, np.ndarray]) -> None:
    """One ConfigError counting and locating the missing cells (``missing``: column -> mask), if any."""
    cells = np.stack(list(missing.values()), axis=1) if missing else np.zeros((0, 0), bool)
    if cells.any():
        first = [f"line {row + 2}, column {list(missing)[column]!r}" for row, column in np.argwhere(cells)[:5]]
        raise ConfigError(f"{path}: {int(cells.sum())} empty or NaN cells in {int(cells.any(axis=1).sum())} rows "
                          f"({'; '.join(first)}{', ...' if cells.sum() > 5 else ''}); set missing: drop to leave those rows "
                          "out, or missing: impute to fill the features from the training rows (rows without a target are "
                          "dropped), or fill them in the file.")


def fill_values(path: Path, numbers: dict[str, np.ndarray], texts: dict[str, list[str | None]], rows: np.ndarray,
                strategy: Literal["mean", "median"]) -> dict[str, Any]:
    """Each column's fill value from the training ``rows``: ``strategy`` for numbers, else the commonest level."""
    fill: dict[str, Any] = {}
    if numbers:
        imputer = SimpleImputer(strategy=strategy).fit(np.stack([values[rows] for values in numbers.values()], axis=1))
        fill.update(zip(numbers, imputer.statistics_.tolist()))
    if texts:
        table = np.array([[column[row] for column in texts.values()] for row in rows], dtype=object).reshape(len(rows), len(texts))
        fill.update(zip(texts, SimpleImputer(strategy="most_frequent", missing_values=None).fit(table).statistics_.tolist()))
    if empty := [name for name, value in fill.items() if value is None or value != value]:  # NaN: nothing to learn from
        raise ConfigError(f"{path}: column {empty[0]!r} has no value in the training rows, so missing: impute has nothing to "
                          "fill it with; leave it out of features.")
    return fill


def drop_incomplete(splits: dict[str, np.ndarray], numbers: dict[str, np.ndarray], texts: dict[str, list[str | None]],
                    count: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The splits' rows without a missing cell, and how many each split lost."""
    incomplete = np.zeros(count, dtype=bool)
    for column in [*numbers.values(), *([value is None for value in column] for column in texts.values())]:
        incomplete |= np.isnan(column) if isinstance(column, np.ndarray) else np.array(column, dtype=bool)
    kept = {name: rows[~incomplete[rows]] for name, rows in splits.items()}
    return kept, {name: len(splits[name]) - len(kept[name]) for name in splits}
