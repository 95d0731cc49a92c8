"""Your own table: a CSV file with a header row, one column the target, trained with one config."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from datamodules.csv_cells import (
    MISSING_LEVEL,
    Missing,
    drop_incomplete,
    fill_values,
    is_missing,
    numbers,
    one_hot,
    read_rows,
    refuse_missing,
)
from datamodules.tensor import SPLITS, Split, TensorDataModule, sorted_splits, stratified_split
from lightning_models.checks import ConfigError, check_choice, check_fraction

Task = Literal["classification", "regression"]


def encode_target(path: Path, name: str, cells: list[str], present: np.ndarray, task: str,
                  max_classes: int) -> tuple[np.ndarray, Task, list[str] | None]:
    labels = [cell for cell, known in zip(cells, present) if known]
    numeric = [value for value, known in zip(numbers(path, name, cells), present) if known]
    whole = None not in numeric and all(value == int(value) for value in numeric)
    if task == "auto":
        task = "classification" if None in numeric or (whole and len(set(numeric)) <= max_classes) else "regression"
    if task == "regression":
        if None in numeric:
            raise ConfigError(f"{path}: task=regression needs a numeric target; {name!r} holds {labels[numeric.index(None)]!r}.")
        targets = np.full((len(cells), 1), np.nan, dtype=np.float32)
        targets[present, 0] = numeric
        return targets, "regression", None
    class_names = sorted(set(labels), key=float if whole else str)  # numbers in numeric order: 2 before 10
    if len(class_names) < 2:
        raise ConfigError(f"{path}: the target column {name!r} has one class only ({class_names[0]!r}).")
    targets = np.full(len(cells), -1, dtype=np.int64)
    index = {class_name: position for position, class_name in enumerate(class_names)}
    targets[present] = [index[value] for value in labels]
    return targets, "classification", class_names


class CSVDataModule(TensorDataModule):
    """A CSV table with a header row (options: docs/own-data.md), read once when first sized."""

    path_arguments = ("path",)

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
            raise ConfigError(f"delimiter={delimiter!r} is invalid; expected one character, or None.")
        self.path, self.target, self.features, self.task_option, self.output_names = Path(path), target, features, task, [target]
        self.categorical, self.max_classes, self.split_column = categorical or [], max_classes, split_column
        self.val_fraction, self.test_fraction, self.delimiter = val_fraction, test_fraction, delimiter
        self.missing, self.impute_numbers, self.missing_level = missing, impute_numbers, missing_level

    @cached_property
    def table(self) -> SimpleNamespace:
        path, target, split_column, categorical = self.path, self.target, self.split_column, self.categorical
        header, rows = read_rows(path, self.delimiter)
        if absent := [name for name in [target, *(self.features or []), *categorical, *([split_column] if split_column else [])]
                      if name not in header]:
            raise ConfigError(f"{path}: no column {', '.join(map(repr, absent))}; the columns are {', '.join(header)}.")
        features = self.features or [name for name in header if name not in (target, split_column)]
        columns = {name: [row[header.index(name)] for row in rows] for name in header}
        missing = {name: np.array([is_missing(cell) for cell in columns[name]], dtype=bool) for name in header
                   if name in (target, *features) and not (self.missing_level and name in categorical)}
        if self.missing == "refuse":
            refuse_missing(path, missing)
        texts = {name: [(MISSING_LEVEL if self.missing_level else None) if is_missing(cell) else cell.strip()
                        for cell in columns[name]] for name in features if name in categorical}
        values = {name: numbers(path, name, columns[name]) for name in features if name not in categorical}
        for name, parsed in values.items():
            if (line := next((row for row, value in enumerate(parsed) if value is None and not missing[name][row]), None)) is not None:
                raise ConfigError(f"{path}: column {name!r} is not numeric ({columns[name][line]!r} at line {line + 2}); "
                                  "list it in categorical, or leave it out of features.")
        if not (present := ~missing[target]).any():
            raise ConfigError(f"{path}: the target column {target!r} is empty or NaN in every row.")
        targets, task, class_names = encode_target(path, target, columns[target], present, self.task_option, self.max_classes)
        split_names = columns[split_column] if split_column else None
        if split_names is not None and (bad := sorted(set(split_names) - set(SPLITS))):
            raise ConfigError(f"{path}: column {split_column!r} holds {bad[0]!r}; expected train, val or test.")
        numeric = {name: np.array([np.nan if value is None else value for value in parsed]) for name, parsed in values.items()}
        return SimpleNamespace(features=features, numbers=numeric, texts=texts, targets=targets, has_target=present, task=task,
                               class_names=class_names, split_names=split_names)

    @cached_property
    def encoded(self) -> SimpleNamespace:
        table, (splits, dropped) = self.table, self.split_rows()
        if self.missing == "drop":
            splits, lost = drop_incomplete(splits, table.numbers, table.texts, len(table.targets))
            dropped = {name: count + lost.get(name, 0) for name, count in dropped.items()}
        if not len(splits["train"]):
            raise ConfigError(f"{self.path}: every training row has an empty or NaN cell; use missing: impute.")
        numeric, texts, fill = table.numbers, table.texts, {}
        if self.missing == "impute":
            fill = fill_values(self.path, numeric, {} if self.missing_level else texts, splits["train"], self.impute_numbers)
            numeric = {name: np.where(np.isnan(values), fill[name], values) for name, values in numeric.items()}
            texts = {name: [fill[name] if value is None else value for value in column] for name, column in texts.items()}
        levels = {name: sorted({texts[name][row] for row in splits["train"]} - {None}) for name in texts}
        blocks = [np.zeros((len(table.targets), 0), np.float32)]  # there may be no feature column
        blocks += [one_hot(texts[name], levels[name]) if name in texts else numeric[name].astype(np.float32)[:, None]
                   for name in table.features]
        return SimpleNamespace(inputs=np.concatenate(blocks, axis=1), splits=sorted_splits(*splits.values()), vocabularies=levels,
                               fill=fill, dropped=dropped)

    def split_rows(self) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        table = self.table
        rows, given, lost = np.flatnonzero(table.has_target), None, dict.fromkeys([*SPLITS, "unsplit"], 0)
        labels = table.targets if self.task == "classification" else None
        if table.split_names is not None:
            names = np.array(table.split_names)
            chosen = {name: rows[names[rows] == name] for name in SPLITS}
            if empty := [name for name in ("train", "test") if not len(chosen[name])]:
                raise ConfigError(f"{self.path}: the split column names no {empty[0]} row.")
            rest, test, given = np.sort(np.concatenate([chosen["train"], chosen["val"]])), chosen["test"], (chosen["train"], chosen["val"])
            lost.update({name: int(((names == name) & ~table.has_target).sum()) for name in SPLITS})
        else:
            rest, test = self.draw(rows, self.test_fraction, labels)
            lost["unsplit"] = int((~table.has_target).sum())
        train, val = self.train_and_val(rest, None if labels is None else labels[rest],
                                        lambda: given or self.draw(rest, self.val_fraction / (1 - self.test_fraction), labels))
        return {"train": train, "val": val, "test": test}, lost

    def draw(self, rows: np.ndarray, fraction: float, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return stratified_split(rows, fraction, None if labels is None else labels[rows], self.seed, self.path)

    dropped_rows = property(lambda self: dict(self.encoded.dropped))  # per split and ``unsplit`` (no target, never placed)
    feature_names = property(lambda self: self.table.features)
    task = property(lambda self: self.table.task)
    class_names = property(lambda self: self.table.class_names)
    num_features = property(lambda self: self.encoded.inputs.shape[1])
    num_outputs = property(lambda self: len(self.table.class_names) if self.task == "classification" else 1)

    def one_hot_levels(self) -> dict[str, list[str]]:
        return self.encoded.vocabularies

    def prediction_inputs(self) -> dict[str, Any]:
        return {**super().prediction_inputs(), "fill": self.encoded.fill, "missing_level": MISSING_LEVEL if self.missing_level else None}

    def row_indices(self) -> dict[str, np.ndarray]:
        return self.encoded.splits

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.encoded.inputs, self.table.targets
