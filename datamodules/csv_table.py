"""Your own table: a CSV file with a header row, one column the target, trained with one config."""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from datamodules.tensor import SPLITS, Split, TensorDataModule, sorted_splits, stratified_split
from lightning_models.checks import RELATIVE, ConfigError, check_choice, check_fraction

MISSING = {"", "na", "nan", "null", "none", "n/a"}
Task = Literal["classification", "regression"]


def number(cell: str) -> float | None:
    try:
        return value if math.isfinite(value := float(cell)) else None
    except ValueError:
        return None


class Table(NamedTuple):
    """A CSV file as arrays: ``inputs`` (rows, features) float32; ``targets`` class indices (int64) or values
    (rows, 1) float32; ``class_names`` for classification; each row's split name if the file gives them; the
    feature columns in order and the categorical ones' levels."""

    inputs: np.ndarray
    targets: np.ndarray
    task: Task
    class_names: list[str] | None
    split_names: list[str] | None
    features: list[str]
    vocabularies: dict[str, list[str]]  # each categorical column's levels, in the one-hot order


def read_rows(path: Path, delimiter: str | None = None) -> tuple[list[str], list[list[str]]]:
    """The header and the non-empty rows, each as long as the header. ``delimiter=None``: comma, semicolon, tab
    or ``|``, as csv.Sniffer reads the first lines (or the header alone, when a ragged row spoils them)."""
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


def encode_features(path: Path, columns: dict[str, list[str]], features: list[str], categorical: list[str], count: int) -> np.ndarray:
    """The ``count`` rows' inputs: numeric columns as they are, ``categorical`` ones one-hot (levels sorted)."""
    blocks = [np.zeros((count, 0), np.float32)]  # a table may have no feature column
    for name in features:
        values = columns[name]
        if name in categorical:
            levels = levels_of(values)
            blocks.append(np.array([[value == level for level in levels] for value in values], dtype=np.float32))
            continue
        parsed = [number(value) for value in values]
        if None in parsed:
            line = parsed.index(None) + 2
            raise ConfigError(f"{path}: column {name!r} is not numeric ({values[line - 2]!r} at line {line}); "
                              f"list it in categorical to one-hot encode it, or leave it out of features.")
        blocks.append(np.array(parsed, dtype=np.float32)[:, None])
    return np.concatenate(blocks, axis=1)


def levels_of(values: list[str]) -> list[str]:
    """A categorical column's levels in one-hot order."""
    return sorted(set(values))


def encode_target(path: Path, name: str, labels: list[str], task: str, max_classes: int) -> tuple[np.ndarray, Task, list[str] | None]:
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
        delimiter: the character between cells; ``None`` tells comma, semicolon, tab and ``|`` apart.
        batch_size, standardize, seed, predict_split, fold, folds: see ``TensorDataModule`` (one-hot
            columns are standardised too, harmlessly).

    The file is read once, when its sizes, task or class names are first asked for (by the CLI right away);
    a problem is one ConfigError naming the file, line and column. Example: ``CSVDataModule("wine.csv", "class")``.
    """

    path_arguments = ("path",)  # relative: to the config file that names it (lightning_models.training.data_paths)

    def __init__(self, path: str, target: str, features: list[str] | None = None,
                 task: Literal["auto", "classification", "regression"] = "auto", categorical: list[str] | None = None,
                 max_classes: int = 20, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 split_column: str | None = None, delimiter: str | None = None, batch_size: int | None = None,
                 standardize: bool = True, seed: int = 0, predict_split: Split = "test", fold: int | None = None,
                 folds: int = 5) -> None:
        super().__init__(batch_size, standardize, seed, predict_split, fold, folds)
        check_choice("task", task, ("auto", "classification", "regression"))
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction, allow_zero=split_column is not None)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g}; expected less than 1.")
        if delimiter is not None and len(delimiter) != 1:
            raise ConfigError(f"delimiter={delimiter!r} is invalid; expected one character, or None to detect it.")
        self.path, self.target, self.features, self.task_option = Path(path), target, features, task
        self.output_names = [target]
        self.categorical, self.max_classes, self.split_column = categorical or [], max_classes, split_column
        self.val_fraction, self.test_fraction, self.delimiter = val_fraction, test_fraction, delimiter

    @cached_property
    def table(self) -> Table:
        """The file, read and checked once."""
        path, target, split_column = self.path, self.target, self.split_column
        header, rows = read_rows(path, self.delimiter)
        missing = [name for name in [target, *(self.features or []), *self.categorical, *([split_column] if split_column else [])]
                   if name not in header]
        if missing:
            raise ConfigError(f"{path}: no column {', '.join(map(repr, missing))}; the columns are {', '.join(header)}.")
        features = self.features or [name for name in header if name not in (target, split_column)]
        columns = {name: [row[header.index(name)] for row in rows] for name in header}
        for name in [target, *features]:
            for line, cell in enumerate(columns[name], start=2):
                if cell.strip().lower() in MISSING:
                    raise ConfigError(f"{path}: line {line}, column {name!r} is empty or NaN ({cell!r}); fill or drop that row.")
        inputs = encode_features(path, columns, features, self.categorical, len(rows))
        targets, task, class_names = encode_target(path, target, columns[target], self.task_option, self.max_classes)
        split_names = columns[split_column] if split_column else None
        if split_names is not None and (bad := sorted(set(split_names) - set(SPLITS))):
            raise ConfigError(f"{path}: column {split_column!r} holds {bad[0]!r}; expected train, val or test.")
        vocabularies = {name: levels_of(columns[name]) for name in features if name in self.categorical}
        return Table(inputs, targets, task, class_names, split_names, features, vocabularies)

    def prediction_inputs(self) -> dict[str, Any]:
        return {**super().prediction_inputs(), "features": self.table.features, "categorical": self.table.vocabularies}

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
        rows, given = np.arange(len(self.table.targets)), None
        labels = self.table.targets if self.task == "classification" else None
        if self.table.split_names is not None:
            chosen = {name: rows[np.array(self.table.split_names) == name] for name in SPLITS}
            if empty := [name for name in ("train", "test") if not len(chosen[name])]:
                raise ConfigError(f"{self.path}: the split column names no {empty[0]} row.")
            rest, test = np.sort(np.concatenate([chosen["train"], chosen["val"]])), chosen["test"]
            given = chosen["train"], chosen["val"]
        else:
            rest, test = self.draw(rows, self.test_fraction, labels)
        train, val = self.train_and_val(rest, None if labels is None else labels[rest],
                                        lambda: given or self.draw(rest, self.val_fraction / (1 - self.test_fraction), labels))
        return sorted_splits(train, val, test)

    def draw(self, rows: np.ndarray, fraction: float, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        try:
            return stratified_split(rows, fraction, None if labels is None else labels[rows], self.seed)
        except ValueError as error:  # e.g. a class with a single row cannot be stratified
            raise ConfigError(f"{self.path}: cannot split {len(self.table.targets)} rows into train/val/test ({error}); "
                              "use a split column or smaller fractions.") from None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.table.inputs, self.table.targets
