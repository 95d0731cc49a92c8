"""Iris (scikit-learn's copy, no download) for the five tabular experiments of source texts 000 and 002."""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
import torch
from sklearn.datasets import load_iris

from datamodules.tensor import Examples, Split, TensorDataModule, stratified_split
from lightning_models.checks import check_choice, check_fraction

TARGETS = ("species", "petal_width", "features")
PARTITIONS = ("odd_even", "stratified")


@cache
def iris_table() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's copy of iris, read once: measurements (150, 4), species (150,), species names."""
    iris = load_iris()
    return iris.data.astype(np.float32), iris.target.astype(np.int64), list(iris.target_names)


class IrisDataModule(TensorDataModule):
    """Iris as tensors.

    Args:
        target: ``species`` (3 classes from the 4 measurements), ``petal_width`` (regressed from
            the other three), or ``features`` (all four, for the autoencoder; targets are the raw
            measurements so reconstruction error is in cm^2 whatever the input scaling).
        partition: how rows are divided into train and test: ``odd_even``, the source texts' rule,
            odd rows train (75), even rows test (75); ``stratified``, a seeded stratified draw with
            ``test_fraction`` of the rows as test.
        val_fraction: part of the training rows held out, stratified by species, for validation.
            ``0`` keeps every training row for training, as the source texts do; validation then runs
            on the training rows, so ``val/*`` metrics are the texts' train metrics.
        test_fraction: test share of the ``stratified`` partition.
        batch_size, standardize, seed, predict_split: see ``TensorDataModule``.

    Example: ``IrisDataModule(target="petal_width", val_fraction=0.2)``.
    """

    def __init__(
        self,
        target: Literal["species", "petal_width", "features"] = "species",
        partition: Literal["odd_even", "stratified"] = "odd_even",
        val_fraction: float = 0.2,
        test_fraction: float = 0.5,
        batch_size: int | None = None,
        standardize: bool = True,
        seed: int = 0,
        predict_split: Split = "test",
    ) -> None:
        super().__init__(batch_size=batch_size, standardize=standardize, seed=seed, predict_split=predict_split)
        check_choice("target", target, TARGETS)
        check_choice("partition", partition, PARTITIONS)
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction, allow_zero=False)
        self.target, self.partition, self.val_fraction, self.test_fraction = target, partition, val_fraction, test_fraction

    @property
    def class_names(self) -> list[str]:
        return list(iris_table()[2])

    @property
    def num_features(self) -> int:
        return 3 if self.target == "petal_width" else 4

    @property
    def num_outputs(self) -> int:
        return {"species": 3, "petal_width": 1, "features": 4}[self.target]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All 150 rows: ``(inputs, targets, species)`` as numpy arrays, before any scaling."""
        data, species, _ = iris_table()
        data, species = data.copy(), species.copy()
        if self.target == "species":
            return data, species, species
        if self.target == "petal_width":
            return data[:, :3], data[:, 3:], species
        return data, data, species

    def row_indices(self) -> dict[str, np.ndarray]:
        """Row numbers of each split; seeded, disjoint, and covering all 150 rows."""
        _, _, species = self.arrays()
        rows = np.arange(len(species))
        if self.partition == "odd_even":
            train, test = rows[rows % 2 == 1], rows[rows % 2 == 0]
        else:
            train, test = stratified_split(rows, self.test_fraction, species, self.seed)
        train, val = stratified_split(train, self.val_fraction, species[train], self.seed)
        return {"train": np.sort(train), "val": np.sort(val if len(val) else train), "test": np.sort(test)}

    def load_splits(self) -> dict[str, Examples]:
        inputs, targets, _ = self.arrays()
        inputs_t, targets_t = torch.from_numpy(inputs), torch.from_numpy(targets)
        return {name: (inputs_t[rows], targets_t[rows]) for name, rows in self.row_indices().items()}

    def labelled_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every flower's (scaled) inputs and its species, for panels such as the latent-code plot."""
        inputs, _, species = self.arrays()
        return self.standardize_inputs(torch.from_numpy(inputs)), torch.from_numpy(species)
