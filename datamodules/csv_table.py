"""Your own table: a CSV file with a header row, one column the target, trained with one config."""

from __future__ import annotations

import contextlib
import csv
import itertools
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from datamodules.csv_cells import (
    MISSING_LEVEL,
    Missing,
    drop_incomplete,
    fill_values,
    is_missing,
    levels_of,
    numbers,
    one_hot,
    refuse_missing,
)
from datamodules.tensor import SPLITS, Split, TensorDataModule, sorted_splits, stratified_split
from lightning_models.checks import RELATIVE, ConfigError, check_choice, check_fraction

Task = Literal["classification", "regression"]


class Table(NamedTuple):
    """A CSV file, read and checked: numeric feature columns as float64 (NaN where missing), categorical ones as text
    (None where missing); ``targets`` class indices (int64, -1 where missing) or values (rows, 1) float32 (NaN where
    missing); ``class_names`` for classification; each row's split name if the file gives them."""

    features: list[str]
    numbers: dict[str, np.ndarray]
    texts: dict[str, list[str | None]]
    targets: np.ndarray
    has_target: np.ndarray
    task: Task
    class_names: list[str] | None
    split_names: list[str] | None


class Encoded(NamedTuple):
    """The table as model inputs for one division into splits: ``inputs`` (rows, features) float32 for every row of the
    file (categorical columns one-hot over the training rows' levels; a level they lack is all zeros), each split's
    rows, the levels, the fitted fill values (``missing: impute``) and the rows each split lost to missing cells."""

    inputs: np.ndarray
    splits: dict[str, np.ndarray]
    vocabularies: dict[str, list[str]]
    fill: dict[str, Any]
    dropped: dict[str, int]


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


def encode_target(path: Path, name: str, cells: list[str], present: np.ndarray, task: str,
                  max_classes: int) -> tuple[np.ndarray, Task, list[str] | None]:
    """``(targets, task, class_names)`` of the rows (``present``: those with a target); ``task="auto"`` picks
    classification for a non-numeric target or whole numbers with at most ``max_classes`` distinct values."""
    labels = [cell for cell, known in zip(cells, present) if known]
    numeric = [value for value, known in zip(numbers(path, name, cells), present) if known]
    whole = None not in numeric and all(value == int(value) for value in numeric)
    if task == "auto":
        task = "classification" if None in numeric or (whole and len(set(numeric)) <= max_classes) else "regression"
    if task == "regression":
        if None in numeric:
            raise ConfigError(f"{path}: task=regression needs a numeric target; column {name!r} holds "
                              f"{labels[numeric.index(None)]!r}.")
        targets = np.full((len(cells), 1), np.nan, dtype=np.float32)
        targets[present, 0] = numeric
        return targets, "regression", None
    class_names = sorted(set(labels), key=float if whole else str)  # numbers in numeric order: 2 before 10
    if len(class_names) < 2:
        raise ConfigError(f"{path}: the target column {name!r} has one class only ({class_names[0]!r}); "
                          "a classifier needs at least two.")
    index = {class_name: position for position, class_name in enumerate(class_names)}
    targets = np.full(len(cells), -1, dtype=np.int64)
    targets[present] = [index[value] for value in labels]
    return targets, "classification", class_names


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
        missing: what to do with empty or NaN cells (``csv_missing.MISSING``) in the target and feature columns:
            ``refuse`` the table (one error counting and locating them), ``drop`` the rows holding one (counted per
            split in ``dropped_rows``), or ``impute`` the features with scikit-learn's ``SimpleImputer`` fitted on the
            training rows (rows without a target are dropped); the fill values go into the checkpoint, so prediction
            fills a missing cell the same way.
        impute_numbers: ``mean`` or ``median``, for numeric columns with ``missing: impute`` (categorical columns get
            their most frequent level).
        missing_level: a missing cell of a categorical column is a level of its own, ``(missing)``.
        batch_size, standardize, seed, predict_split, fold, folds, standardize_target: see ``TensorDataModule``
            (one-hot columns are standardised too, harmlessly).

    Categorical columns are one-hot over the levels of the training rows: a level only validation or test rows hold
    is all zeros there, and refused at prediction. The file is read once, when its sizes, task or class names are first
    asked for (by the CLI right away); a problem is one ConfigError naming the file, line and column. Example:
    ``CSVDataModule("wine.csv", "class")``.
    """

    path_arguments = ("path",)  # relative: to the config file that names it (lightning_models.training.data_paths)

    def __init__(self, path: str, target: str, features: list[str] | None = None,
                 task: Literal["auto", "classification", "regression"] = "auto", categorical: list[str] | None = None,
                 max_classes: int = 20, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 split_column: str | None = None, delimiter: str | None = None, batch_size: int | None = None,
                 standardize: bool = True, seed: int = 0, predict_split: Split = "test", fold: int | None = None,
                 folds: int = 5, missing: Missing = "refuse", impute_numbers: Literal["mean", "median"] = "mean",
                 missing_level: bool = False, standardize_target: bool = False) -> None:
        super().__init__(batch_size, standardize, seed, predict_split, fold, folds, standardize_target)
        check_choice("task", task, ("auto", "classification", "regression"))
        check_choice("missing", missing, ("refuse", "drop", "impute"))
        check_choice("impute_numbers", impute_numbers, ("mean", "median"))
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
        self.missing, self.impute_numbers, self.missing_level = missing, impute_numbers, missing_level

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
        absent = {name: np.array([is_missing(cell) for cell in columns[name]], dtype=bool) for name in header
                  if name in (target, *features) and not (self.missing_level and name in self.categorical)}
        if self.missing == "refuse":
            refuse_missing(path, absent)
        texts = {name: [MISSING_LEVEL if self.missing_level and is_missing(cell) else None if is_missing(cell) else cell.strip()
                        for cell in columns[name]] for name in features if name in self.categorical}
        values = {name: numbers(path, name, columns[name]) for name in features if name not in self.categorical}
        for name, parsed in values.items():
            if (line := next((row for row, value in enumerate(parsed) if value is None and not absent[name][row]), None)) is not None:
                raise ConfigError(f"{path}: column {name!r} is not numeric ({columns[name][line]!r} at line {line + 2}); "
                                  f"list it in categorical to one-hot encode it, or leave it out of features.")
        present = ~absent[target]
        if not present.any():
            raise ConfigError(f"{path}: the target column {target!r} is empty or NaN in every row.")
        targets, task, class_names = encode_target(path, target, columns[target], present, self.task_option, self.max_classes)
        split_names = columns[split_column] if split_column else None
        if split_names is not None and (bad := sorted(set(split_names) - set(SPLITS))):
            raise ConfigError(f"{path}: column {split_column!r} holds {bad[0]!r}; expected train, val or test.")
        numeric = {name: np.array([np.nan if value is None else value for value in parsed]) for name, parsed in values.items()}
        return Table(features, numeric, texts, targets, present, task, class_names, split_names)

    @cached_property
    def encoded(self) -> Encoded:
        """The inputs for this division into splits (``seed``, ``fold``): levels, fill values, dropped rows."""
        table, (splits, dropped) = self.table, self.split_rows()
        if self.missing == "drop":
            splits, lost = drop_incomplete(splits, table.numbers, table.texts, len(table.targets))
            dropped = {name: count + lost.get(name, 0) for name, count in dropped.items()}
        if not len(splits["train"]):
            raise ConfigError(f"{self.path}: every training row has an empty or NaN cell; use missing: impute, or fill them.")
        numeric, texts, fill = table.numbers, table.texts, {}
        if self.missing == "impute":
            fill = fill_values(self.path, numeric, {} if self.missing_level else texts, splits["train"], self.impute_numbers)
            numeric = {name: np.where(np.isnan(values), fill[name], values) for name, values in numeric.items()}
            texts = {name: [fill[name] if value is None else value for value in column] for name, column in texts.items()}
        vocabularies = {name: levels_of([texts[name][row] for row in splits["train"]]) for name in texts}
        blocks = [np.zeros((len(table.targets), 0), np.float32)]  # a table may have no feature column
        for name in table.features:
            blocks.append(one_hot(texts[name], vocabularies[name]) if name in texts else numeric[name].astype(np.float32)[:, None])
        return Encoded(np.concatenate(blocks, axis=1), sorted_splits(*splits.values()), vocabularies, fill, dropped)

    def split_rows(self) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Each split's rows that have a target (before rows with a missing feature are dropped; ``val`` may be empty),
        and how many rows each split, or for a drawn split ``unsplit`` (drawn without them), lost for lack of a target."""
        table = self.table
        rows, given, lost = np.flatnonzero(table.has_target), None, dict.fromkeys([*SPLITS, "unsplit"], 0)
        labels = table.targets if self.task == "classification" else None
        if table.split_names is not None:
            names = np.array(table.split_names)
            chosen = {name: rows[names[rows] == name] for name in SPLITS}
            if empty := [name for name in ("train", "test") if not len(chosen[name])]:
                raise ConfigError(f"{self.path}: the split column names no {empty[0]} row.")
            rest, test = np.sort(np.concatenate([chosen["train"], chosen["val"]])), chosen["test"]
            given = chosen["train"], chosen["val"]
            lost.update({name: int(((names == name) & ~table.has_target).sum()) for name in SPLITS})
        else:
            rest, test = self.draw(rows, self.test_fraction, labels)
            lost["unsplit"] = int((~table.has_target).sum())
        train, val = self.train_and_val(rest, None if labels is None else labels[rest],
                                        lambda: given or self.draw(rest, self.val_fraction / (1 - self.test_fraction), labels))
        return {"train": train, "val": val, "test": test}, lost

    @property
    def dropped_rows(self) -> dict[str, int]:
        """Rows left out for a missing cell: per split (``train``, ``val``, ``test``), and ``unsplit``, those without a
        target that a drawn split never placed."""
        return dict(self.encoded.dropped)

    def one_hot_levels(self) -> dict[str, list[str]]:
        return self.encoded.vocabularies

    @property
    def feature_names(self) -> list[str]:
        return self.table.features

    def prediction_inputs(self) -> dict[str, Any]:
        return {**super().prediction_inputs(), "fill": self.encoded.fill, "missing_level": MISSING_LEVEL if self.missing_level else None}

    @property
    def task(self) -> Task:
        return self.table.task

    @property
    def class_names(self) -> list[str] | None:
        return self.table.class_names

    @property
    def num_features(self) -> int:
        return self.encoded.inputs.shape[1]

    @property
    def num_outputs(self) -> int:
        return len(self.table.class_names) if self.task == "classification" else 1

    def row_indices(self) -> dict[str, np.ndarray]:
        """Row numbers of each split: the split column's, or a seeded (stratified) draw; without dropped rows."""
        return self.encoded.splits

    def draw(self, rows: np.ndarray, fraction: float, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        try:
            return stratified_split(rows, fraction, None if labels is None else labels[rows], self.seed)
        except ValueError as error:  # e.g. a class with a single row cannot be stratified
            raise ConfigError(f"{self.path}: cannot split {len(rows)} rows into train/val/test ({error}); "
                              "use a split column or smaller fractions.") from None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.encoded.inputs, self.table.targets
