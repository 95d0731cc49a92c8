"""The cells of a CSV table: numbers within float32's range, categorical levels one-hot, and missing cells with the
three answers to them (``missing`` of ``CSVDataModule``): refuse the table in one error, drop the rows, or impute the
cells from the training rows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightning_models.checks import ConfigError

MISSING = {"", "na", "nan", "null", "none", "n/a"}  # a cell holding one of these (any case, spaces around) is missing
MISSING_LEVEL = "(missing)"  # the level a missing categorical cell becomes with missing_level=True
Missing = Literal["refuse", "drop", "impute"]
SHOWN = 5  # missing cells a refusal lists
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the inputs' and targets' dtype: a larger number would become inf


def number(cell: str) -> float | None:
    """The cell's value; None for text, NaN or inf. A value beyond float32's range raises OverflowError."""
    try:
        value = float(cell)
    except ValueError:
        return None
    if math.isfinite(value) and abs(value) > FLOAT32_MAX:
        raise OverflowError(cell)
    return value if math.isfinite(value) else None


def numbers(path: Path, name: str, cells: list[str]) -> list[float | None]:
    """``number`` of each cell of column ``name``; a value beyond float32's range is a ConfigError naming its line."""
    parsed = []
    for line, cell in enumerate(cells, start=2):
        try:
            parsed.append(number(cell))
        except OverflowError:
            raise ConfigError(f"{path}: line {line}, column {name!r}: {cell.strip()} is beyond float32's range "
                              f"(±{FLOAT32_MAX:.7g}), the dtype the model computes in; rescale the column (e.g. other units)."
                              ) from None
    return parsed


def levels_of(values: list[str | None]) -> list[str]:
    """A categorical column's levels in one-hot order (sorted); None, a missing cell, is no level."""
    return sorted(set(values) - {None})


def one_hot(values: list[str | None], levels: list[str]) -> np.ndarray:
    """(rows, levels) float32; a value that is no level (or None) is all zeros."""
    position = {level: column for column, level in enumerate(levels)}
    encoded = np.zeros((len(values), len(levels)), dtype=np.float32)
    rows = [(row, position[value]) for row, value in enumerate(values) if value in position]
    if rows:
        encoded[tuple(np.array(rows).T)] = 1.0
    return encoded


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def refuse_missing(path: Path, missing: dict[str, np.ndarray]) -> None:
    """One ConfigError for every missing cell of the columns ``missing`` maps to their missing-cell masks (rows), if
    any: how many cells in how many rows, the first few by line and column, and the options that take them."""
    if not missing:
        return
    cells = np.stack(list(missing.values()), axis=1)  # (rows, columns)
    if not cells.any():
        return
    names = list(missing)
    first = [f"line {row + 2}, column {names[column]!r}" for row, column in np.argwhere(cells)[:SHOWN]]
    more = ", ..." if cells.sum() > SHOWN else ""
    raise ConfigError(f"{path}: {int(cells.sum())} empty or NaN cells in {int(cells.any(axis=1).sum())} rows "
                      f"({'; '.join(first)}{more}); set missing: drop to leave those rows out, or missing: impute to fill "
                      "the features from the training rows (rows without a target are dropped), or fill them in the file.")


def fill_values(path: Path, numbers: dict[str, np.ndarray], texts: dict[str, list[str | None]], rows: np.ndarray,
                strategy: Literal["mean", "median"]) -> dict[str, Any]:
    """Each column's fill value, fitted by scikit-learn's SimpleImputer on the training ``rows`` only: ``strategy``
    for numeric columns (NaN where missing), the most frequent level for categorical ones (None where missing).
    Plain values, for the checkpoint."""
    from sklearn.impute import SimpleImputer

    fill: dict[str, Any] = {}
    if numbers:
        names = list(numbers)
        imputer = SimpleImputer(strategy=strategy).fit(np.stack([numbers[name][rows] for name in names], axis=1))
        fill.update(zip(names, imputer.statistics_.tolist()))
    if texts:
        names = list(texts)
        table = np.array([[texts[name][row] for name in names] for row in rows], dtype=object).reshape(len(rows), len(names))
        imputer = SimpleImputer(strategy="most_frequent", missing_values=None).fit(table)
        fill.update(zip(names, imputer.statistics_.tolist()))
    if empty := [name for name, value in fill.items() if value is None or value != value]:  # NaN: no value to learn from
        raise ConfigError(f"{path}: column {empty[0]!r} has no value in the training rows, so missing: impute has nothing to "
                          "fill it with; leave it out of features.")
    return fill


def drop_incomplete(splits: dict[str, np.ndarray], numbers: dict[str, np.ndarray], texts: dict[str, list[str | None]],
                    count: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The splits' rows (of ``count``) without those missing a cell of ``numbers`` (NaN) or ``texts`` (None), and how
    many each split lost."""
    incomplete = np.zeros(count, dtype=bool)
    for values in numbers.values():
        incomplete |= np.isnan(values)
    for column in texts.values():
        incomplete |= np.array([value is None for value in column], dtype=bool)
    kept = {name: rows[~incomplete[rows]] for name, rows in splits.items()}
    return kept, {name: len(splits[name]) - len(kept[name]) for name in splits}
