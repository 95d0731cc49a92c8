"""Iris (scikit-learn's copy) for the tabular experiments of source texts 000 and 002."""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
import torch
from sklearn.datasets import load_iris

from datamodules.tensor import Split, TensorDataModule, sorted_splits, stratified_split
from lightning_models.checks import check_choice, check_fraction

MEASUREMENTS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]  # centimetres, scikit-learn's order


@cache
def iris_table() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Measurements (150, 4) float32, species (150,) int64, species names."""
    iris = load_iris()
    return iris.data.astype(np.float32), iris.target.astype(np.int64), list(iris.target_names)


class IrisDataModule(TensorDataModule):
    """Iris as tensors; ``partition=odd_even``: the texts' split (odd rows train); ``val_fraction=0``: validate on train."""

    def __init__(self, target: Literal["species", "petal_width", "features"] = "species",
                 partition: Literal["odd_even", "stratified"] = "odd_even", val_fraction: float = 0.2,
                 test_fraction: float = 0.5, batch_size: int | None = None, standardize: bool = True, seed: int = 0,
                 predict_split: Split = "test", fold: int | None = None, folds: int = 5,
                 standardize_target: bool = False) -> None:
        super().__init__(batch_size, standardize, seed, predict_split, fold, folds, standardize_target)
        check_choice("target", target, ("species", "petal_width", "features"))
        check_choice("partition", partition, ("odd_even", "stratified"))
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction, allow_zero=False)
        self.target, self.partition, self.val_fraction, self.test_fraction = target, partition, val_fraction, test_fraction
        self.class_names = list(iris_table()[2])
        self.num_features, self.num_outputs = {"species": (4, 3), "petal_width": (3, 1), "features": (4, 4)}[target]
        self.feature_names = MEASUREMENTS[:3] if target == "petal_width" else MEASUREMENTS
        self.output_names = {"petal_width": ["petal_width"], "features": MEASUREMENTS}.get(target)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data, species, _ = iris_table()
        data, species = data.copy(), species.copy()
        return (*{"species": (data, species), "petal_width": (data[:, :3], data[:, 3:]), "features": (data, data)}[self.target],
                species)

    def row_indices(self) -> dict[str, np.ndarray]:
        species, rows = iris_table()[1], np.arange(150)
        if self.partition == "odd_even":
            rest, test = rows[rows % 2 == 1], rows[rows % 2 == 0]
        else:
            rest, test = stratified_split(rows, self.test_fraction, species, self.seed)
        train, val = self.train_and_val(rest, species[rest] if self.target == "species" else None,
                                        lambda: stratified_split(rest, self.val_fraction, species[rest], self.seed))
        return sorted_splits(train, val, test)

    def labelled_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every flower's scaled inputs and species."""
        inputs, _, species = self.arrays()
        return self.standardize_inputs(torch.from_numpy(inputs)), torch.from_numpy(species)
