"""Your own table: a CSV file with a header row, one column the target, trained with one config."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from datamodules.tensor import SPLITS, Examples, Split, TensorDataModule, stratified_split
from lightning_models.checks import ConfigError, check_choice, check_fraction

MISSING = {"", "na", "nan", "null", "none", "n/a"}
Task = Literal["classification", "regression"]


def number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Table:
    """A CSV file as arrays: ``inputs`` (rows, features) float32, ``targets`` class indices (int64) or
    values (rows, 1) float32, ``class_names`` for classification, and each row's split name when the
    file has a split column."""

    inputs: np.ndarray
    targets: np.ndarray
    task: Task
    class_names: list[str] | None
    split_names: list[str] | None


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the non-empty rows, each row as long as the header."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; path must name a CSV file with a header row.")
    with open(path, newline="") as handle:
        table = list(csv.reader(handle))
    if len(table) < 2:
        raise ConfigError(f"{path}: expected a header row and at least one data row.")
    header, rows = [name.strip() for name in table[0]], [row for row in table[1:] if row]
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ConfigError(f"{path}: line {line} has {len(row)} cells; the header has {len(header)}.")
    return header, rows


def encode_features(path: Path, columns: dict[str, list[str]], features: list[str], categorical: list[str],
                    count: int) -> np.ndarray:
    """The ``count`` rows' inputs: numeric columns as they are, ``categorical`` ones one-hot (levels
    sorted), in ``features``' order."""
    blocks = [np.zeros((count, 0), np.float32)]  # a table may have no feature column
    for name in features:
        values = columns[name]
        if name in categorical:
            levels = sorted(set(values))
            blocks.append(np.array([[value == level for level in levels] for value in values], dtype=np.float32))
            continue
        parsed = [number(value) for value in values]
        if None in parsed:
            line = parsed.index(None) + 2
            raise ConfigError(f"{path}: column {name!r} is not numeric ({values[line - 2]!r} at line {line}); "
                              f"list it in categorical to one-hot encode it, or leave it out of features.")
        blocks.append(np.array(parsed, dtype=np.float32)[:, None])
    return np.concatenate(blocks, axis=1)


def encode_target(path: Path, name: str, labels: list[str], task: str,
                  max_classes: int) -> tuple[np.ndarray, Task, list[str] | None]:
    """``(targets, task, class_names)``; ``task="auto"`` picks classification for a non-numeric target or
    whole numbers with at most ``max_classes`` distinct values."""
    numeric = [number(value) for value in labels]
    whole = None not in numeric and all(value == int(value) for value in numeric)
    if task == "auto":
        task = "classification" if None in numeric or (whole and len(set(numeric)) <= max_classes) else "regression"
    if task == "regression":
        if None in numeric:
            raise ConfigError(f"{path}: task=regression needs a numeric target; column {name!r} holds "
                              f"{labels[numeric.index(None)]!r}.")
        return np.array(numeric, dtype=np.float32)[:, None], "regression", None
    class_names = sorted(set(labels), key=float if whole else str)  # numbers in numeric order: 2 before 10
    if len(class_names) < 2:
        raise ConfigError(f"{path}: the target column {name!r} has one class only ({class_names[0]!r}); "
                          "a classifier needs at least two.")
    index = {class_name: position for position, class_name in enumerate(class_names)}
    return np.array([index[value] for value in labels], dtype=np.int64), "classification", class_names


def read_table(path: Path, target: str, features: list[str] | None, categorical: list[str], task: str,
               max_classes: int, split_column: str | None) -> Table:
    """The CSV file at ``path`` as a ``Table``; a ConfigError naming the file, the line and the column for
    anything that cannot be trained on (a missing column, an empty cell, text in a numeric column)."""
    header, rows = read_rows(path)
    missing = [name for name in [target, *(features or []), *categorical, *([split_column] if split_column else [])]
               if name not in header]
    if missing:
        raise ConfigError(f"{path}: no column {', '.join(map(repr, missing))}; the columns are {', '.join(header)}.")
    features = features or [name for name in header if name not in (target, split_column)]
    columns = {name: [row[header.index(name)] for row in rows] for name in header}
    for name in [target, *features]:
        for line, cell in enumerate(columns[name], start=2):
            if cell.strip().lower() in MISSING:
                raise ConfigError(f"{path}: line {line}, column {name!r} is empty or NaN ({cell!r}); fill or drop that row.")
    inputs = encode_features(path, columns, features, categorical, len(rows))
    targets, task, class_names = encode_target(path, target, columns[target], task, max_classes)
    split_names = columns[split_column] if split_column else None
    if split_names is not None and (bad := sorted(set(split_names) - set(SPLITS))):
        raise ConfigError(f"{path}: column {split_column!r} holds {bad[0]!r}; expected train, val or test.")
    return Table(inputs, targets, task, class_names, split_names)


class CSVDataModule(TensorDataModule):
    """A CSV table (header row) as tensors, for ``ClassificationModule`` or ``RegressionModule``.

    Args:
        path: the CSV file.
        target: the column to predict.
        features: the input columns (default: every other column but ``split_column``).
        task: ``classification``, ``regression`` or ``auto``: classification when the target is not
            numeric, or holds whole numbers with at most ``max_classes`` distinct values.
        categorical: feature columns to one-hot encode (a non-numeric feature column must be listed).
        max_classes: the ``auto`` rule's limit.
        val_fraction, test_fraction: shares of the rows held out by a seeded split, stratified by class
            for classification.
        split_column: a column naming each row's split (``train``, ``val`` or ``test``) instead.
        batch_size, standardize, seed, predict_split: see ``TensorDataModule`` (standardisation uses
            the training rows only; one-hot columns are standardised too, harmlessly).

    Building it reads nothing; the file is read once, when its sizes, task or class names are first
    asked for (the CLI asks for the sizes right away, so a bad file fails before a run starts). Class
    names are the target's values (sorted), as the confusion matrix and the prediction CSVs show them.
    Example: ``CSVDataModule(path="wine.csv", target="class")``.
    """

    def __init__(
        self,
        path: str,
        target: str,
        features: list[str] | None = None,
        task: Literal["auto", "classification", "regression"] = "auto",
        categorical: list[str] | None = None,
        max_classes: int = 20,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_column: str | None = None,
        batch_size: int | None = None,
        standardize: bool = True,
        seed: int = 0,
        predict_split: Split = "test",
    ) -> None:
        super().__init__(batch_size=batch_size, standardize=standardize, seed=seed, predict_split=predict_split)
        check_choice("task", task, ("auto", "classification", "regression"))
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction, allow_zero=split_column is not None)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g}; expected less than 1.")
        self.path, self.target, self.features, self.task_option = Path(path), target, features, task
        self.categorical, self.max_classes, self.split_column = categorical or [], max_classes, split_column
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    @cached_property
    def table(self) -> Table:
        """The file, read and checked once."""
        return read_table(self.path, self.target, self.features, self.categorical, self.task_option,
                          self.max_classes, self.split_column)

    @property
    def task(self) -> Task:
        return self.table.task

    @property
    def class_names(self) -> list[str] | None:
        return self.table.class_names

    @property
    def num_features(self) -> int:
        return self.table.inputs.shape[1]

    @property
    def num_outputs(self) -> int:
        return len(self.table.class_names) if self.task == "classification" else 1

    def row_indices(self) -> dict[str, np.ndarray]:
        """Row numbers of each split: the split column's, or a seeded (stratified) draw."""
        rows = np.arange(len(self.table.targets))
        if self.table.split_names is not None:
            chosen = {name: rows[np.array(self.table.split_names) == name] for name in SPLITS}
            empty = [name for name in ("train", "test") if not len(chosen[name])]
            if empty:
                raise ConfigError(f"{self.path}: the split column names no {empty[0]} row.")
            return {**chosen, "val": chosen["val"] if len(chosen["val"]) else chosen["train"]}
        labels = self.table.targets if self.task == "classification" else None
        try:
            rest, test = stratified_split(rows, self.test_fraction, labels, self.seed)
            train, val = stratified_split(rest, self.val_fraction / (1 - self.test_fraction),
                                          None if labels is None else labels[rest], self.seed)
        except ValueError as error:  # e.g. a class with a single row cannot be stratified
            raise ConfigError(f"{self.path}: cannot split {len(rows)} rows into train/val/test ({error}); "
                              "use a split column or smaller fractions.") from None
        return {"train": np.sort(train), "val": np.sort(val if len(val) else train), "test": np.sort(test)}

    def load_splits(self) -> dict[str, Examples]:
        inputs, targets = torch.from_numpy(self.table.inputs), torch.from_numpy(self.table.targets)
        return {name: (inputs[rows], targets[rows]) for name, rows in self.row_indices().items()}
