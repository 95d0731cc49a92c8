"""Your own table: a CSV file with a header row, one column the target, trained with one config."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from datamodules.tensor import SPLITS, Examples, Split, TensorDataModule
from lightning_models.checks import ConfigError, check_choice, check_fraction

MISSING = {"", "na", "nan", "null", "none", "n/a"}


def number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


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

    The table is read when the datamodule is built, so a bad file fails before any run starts. Class
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
        check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g}; expected less than 1.")
        self.path, self.val_fraction, self.test_fraction = Path(path), val_fraction, test_fraction
        header, rows = self.read()
        missing = [name for name in [target, *(features or []), *(categorical or []), *([split_column] if split_column else [])]
                   if name not in header]
        if missing:
            raise ConfigError(f"{self.path}: no column {', '.join(map(repr, missing))}; the columns are {', '.join(header)}.")
        features = features or [name for name in header if name not in (target, split_column)]
        categorical = categorical or []
        columns = {name: [row[header.index(name)] for row in rows] for name in header}
        for name in [target, *features]:
            for line, cell in enumerate(columns[name], start=2):
                if cell.strip().lower() in MISSING:
                    raise ConfigError(f"{self.path}: line {line}, column {name!r} is empty or NaN ({cell!r}); "
                                      "fill or drop that row.")
        blocks = []
        for name in features:
            values = columns[name]
            if name in categorical:
                levels = sorted(set(values))
                blocks.append(np.array([[value == level for level in levels] for value in values], dtype=np.float32))
                continue
            parsed = [number(value) for value in values]
            if None in parsed:
                line = parsed.index(None) + 2
                raise ConfigError(f"{self.path}: column {name!r} is not numeric ({values[line - 2]!r} at line {line}); "
                                  f"list it in categorical to one-hot encode it, or leave it out of features.")
            blocks.append(np.array(parsed, dtype=np.float32)[:, None])
        self.inputs = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(rows), 0), np.float32)
        labels = columns[target]
        numeric = [number(value) for value in labels]
        whole = None not in numeric and all(value == int(value) for value in numeric)
        if task == "auto":
            task = "classification" if None in numeric or (whole and len(set(numeric)) <= max_classes) else "regression"
        if task == "regression" and None in numeric:
            raise ConfigError(f"{self.path}: task=regression needs a numeric target; column {target!r} holds "
                              f"{labels[numeric.index(None)]!r}.")
        self.task = task
        if task == "classification":
            key = (lambda value: float(value)) if whole else str  # 2 before 10
            self.class_names = sorted(set(labels), key=key)
            if len(self.class_names) < 2:
                raise ConfigError(f"{self.path}: the target column {target!r} has one class only ({self.class_names[0]!r}); "
                                  "a classifier needs at least two.")
            index = {name: position for position, name in enumerate(self.class_names)}
            self.targets = np.array([index[value] for value in labels], dtype=np.int64)
        else:
            self.targets = np.array(numeric, dtype=np.float32)[:, None]
        self.split_names = columns[split_column] if split_column else None
        if self.split_names is not None and (bad := sorted(set(self.split_names) - set(SPLITS))):
            raise ConfigError(f"{self.path}: column {split_column!r} holds {bad[0]!r}; expected train, val or test.")
        self.feature_names = features

    def read(self) -> tuple[list[str], list[list[str]]]:
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such file; path must name a CSV file with a header row.")
        with open(self.path, newline="") as handle:
            table = list(csv.reader(handle))
        if len(table) < 2:
            raise ConfigError(f"{self.path}: expected a header row and at least one data row.")
        header, rows = [name.strip() for name in table[0]], [row for row in table[1:] if row]
        for line, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise ConfigError(f"{self.path}: line {line} has {len(row)} cells; the header has {len(header)}.")
        return header, rows

    @property
    def num_features(self) -> int:
        return self.inputs.shape[1]

    @property
    def num_outputs(self) -> int:
        return len(self.class_names) if self.task == "classification" else 1

    def row_indices(self) -> dict[str, np.ndarray]:
        """Row numbers of each split: the split column's, or a seeded (stratified) draw."""
        rows = np.arange(len(self.targets))
        if self.split_names is not None:
            chosen = {name: rows[np.array(self.split_names) == name] for name in SPLITS}
            empty = [name for name in ("train", "test") if not len(chosen[name])]
            if empty:
                raise ConfigError(f"{self.path}: the split column names no {empty[0]} row.")
            return {**chosen, "val": chosen["val"] if len(chosen["val"]) else chosen["train"]}
        stratify = self.targets if self.task == "classification" else None
        try:
            rest, test = train_test_split(rows, test_size=self.test_fraction, stratify=stratify, random_state=self.seed)
            train, val = rest, rest
            if self.val_fraction > 0:
                share = self.val_fraction / (1 - self.test_fraction)
                train, val = train_test_split(rest, test_size=share, random_state=self.seed,
                                              stratify=None if stratify is None else stratify[rest])
        except ValueError as error:  # e.g. a class with a single row cannot be stratified
            raise ConfigError(f"{self.path}: cannot split {len(rows)} rows into train/val/test ({error}); "
                              "use a split column or smaller fractions.") from None
        return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    def load_splits(self) -> dict[str, Examples]:
        inputs, targets = torch.from_numpy(self.inputs), torch.from_numpy(self.targets)
        return {name: (inputs[rows], targets[rows]) for name, rows in self.row_indices().items()}
