"""Data in memory as tensors: seeded splits and folds, batches in an order set by (seed, epoch), the tabular base."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from torch import nn

from lightning_models.checks import ConfigError, check_choice, check_positive

Examples = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets)
Split = Literal["train", "val", "test"]
SPLITS = ("train", "val", "test")
Items = TypeVar("Items", np.ndarray, list)


def stratified_split(items: Items, fraction: float, labels: Sequence | np.ndarray | None, seed: int,
                     source: object = "data") -> tuple[Items, Items]:
    """``(kept, drawn)``: a seeded draw of ``fraction`` of ``items``, stratified by ``labels`` unless None."""
    try:
        return tuple(train_test_split(items, test_size=fraction, stratify=labels, random_state=seed)) if fraction else (items, items[:0])
    except ValueError as error:
        raise ConfigError(f"{source}: cannot split {len(items)} rows into train/val/test ({error}); use smaller fractions or "
                          "give the split (a split column, train/val/test folders).") from None


def fold_split(items: Items, labels: Sequence | np.ndarray | None, fold: int, folds: int, seed: int) -> tuple[Items, Items]:
    """``(train, val)``: fold ``fold`` of ``folds`` seeded folds, stratified by ``labels`` unless None."""
    classes, counts = np.unique(labels if labels is not None else np.zeros(len(items)), return_counts=True)
    if counts.min() < folds:
        which = f" of class {classes[counts.argmin()].item()!r}" if labels is not None else ""
        raise ConfigError(f"folds={folds} is more than the {counts.min()} rows{which}; use fewer folds.")
    splitter = StratifiedKFold if labels is not None else KFold
    train, val = list(splitter(folds, shuffle=True, random_state=seed).split(np.zeros(len(items)), labels))[fold]
    return tuple(items[rows] if isinstance(items, np.ndarray) else [items[row] for row in rows] for rows in (train, val))


def sorted_splits(train: Items, val: Items, test: Items) -> dict[str, Items]:
    """Each split sorted; no ``val`` rows: validate on ``train``."""
    ordered = np.sort if isinstance(train, np.ndarray) else sorted
    return {"train": ordered(train), "val": ordered(val if len(val) else train), "test": ordered(test)}


def trainer_state(datamodule: pl.LightningDataModule, shuffle: bool) -> tuple[Callable[[], int] | None, int, int]:
    """``(epoch, rank, world_size)``; a split not shuffled is not dealt to ranks."""
    trainer = datamodule.trainer
    if trainer is None:
        return None, 0, 1
    return (lambda: trainer.current_epoch), *((trainer.global_rank, trainer.world_size) if shuffle else (0, 1))


def order_seed(datamodule: pl.LightningDataModule) -> int:
    """The seed of order, augmentation and fresh samples: the datamodule's plus the run's."""
    return datamodule.seed + (int(os.environ.get("PL_GLOBAL_SEED", 0)) if datamodule.trainer is not None else 0)


def seed_for_epoch(generator: torch.Generator, seed: int, epoch: int) -> torch.Generator:
    """Reseed from ``(seed, epoch)``: a resumed run draws what an uninterrupted one would."""
    return generator.manual_seed(seed + 100_003 * epoch)


def epoch_order(count: int, generator: torch.Generator, seed: int, epoch: int, shuffle: bool, rank: int,
                world_size: int) -> torch.Tensor:
    """This rank's rows of an epoch: every ``world_size``-th of one seeded order (equal shares)."""
    seed_for_epoch(generator, seed, epoch)
    device = generator.device
    order = torch.randperm(count, generator=generator, device=device) if shuffle else torch.arange(count, device=device)
    return order[: count - count % world_size][rank::world_size]


def fit_scale(values: torch.Tensor, names: list[str], owner: str, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's ``(mean, std)``; scale 1 and a warning where it does not vary (StandardScaler's test)."""
    std, x = values.std(dim=0), values.double()
    mean, variance, eps = x.mean(dim=0), x.var(dim=0, correction=0), torch.finfo(torch.float64).eps
    constant = (variance <= len(x) * eps * variance + (len(x) * mean.abs() * eps) ** 2) | (std == 0) | ~torch.isfinite(std)
    if constant.any():
        which = ", ".join(name for name, same in zip(names, constant.tolist()) if same)
        rank_zero_warn(f"{owner}: {what} column(s) {which} do not vary over the training rows; left unscaled (scale 1).")
    return values.mean(dim=0), torch.where(constant, torch.ones_like(std), std)


def check_finite(owner: str, splits: dict[str, Examples], after: str = "") -> None:
    """A ConfigError naming the first non-finite input (``after``: the step that made it)."""
    for name, (inputs, _) in splits.items():
        if inputs.is_floating_point() and len(bad := (~torch.isfinite(inputs)).nonzero()):
            what = f"{after} the {name} inputs overflows float32" if after else f"the {name} inputs contain NaN or inf"
            raise ConfigError(f"{owner}: {what} (first at row, column {bad[0].tolist()}); "
                              + ("rescale that column." if after else "clean or impute the data."))


class TensorBatches:
    """Batches sliced in ``epoch_order`` from tensors that stay put; ``transform``: to model inputs."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int | None, shuffle: bool, seed: int,
                 epoch: Callable[[], int] | None = None, rank: int = 0, world_size: int = 1,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.inputs, self.targets, self.shuffle, self.seed, self.transform = inputs, targets, shuffle, seed, transform
        self.batch_size = min(batch_size or len(inputs), len(inputs)) or 1
        self.epoch = epoch or itertools.count().__next__  # without a trainer, each pass is the next epoch
        self.rank, self.world_size, self.generator = rank, world_size, torch.Generator(device=inputs.device)

    def __len__(self) -> int:
        return -(-(len(self.inputs) // self.world_size) // self.batch_size)

    def __iter__(self) -> Iterator[Examples]:
        epoch, count = self.epoch(), len(self.inputs)
        if self.batch_size >= count and not self.shuffle:
            yield self.batch(self.inputs, epoch), self.targets
            return
        order = epoch_order(count, self.generator, self.seed, epoch, self.shuffle, self.rank, self.world_size)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.batch(self.inputs[index], epoch), self.targets[index]

    def batch(self, inputs: torch.Tensor, epoch: int) -> torch.Tensor:
        return inputs if self.transform is None else self.transform(inputs)


class InMemoryDataModule(pl.LightningDataModule):
    """Base of the datamodules whose ``splits`` are ``(inputs, targets)`` tensors, moved once to the device."""

    def __init__(self, batch_size: int | None, seed: int, predict_split: str = "test", fold: int | None = None,
                 folds: int = 5) -> None:
        super().__init__()
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        check_choice("predict_split", predict_split, SPLITS)
        if type(folds) is not int or folds < 2:  # type(): True is no int here
            raise ConfigError(f"folds={folds!r} is invalid; expected an integer >= 2.")
        if fold is not None and (type(fold) is not int or not 0 <= fold < folds):
            raise ConfigError(f"fold={fold!r} is invalid; expected 0 to folds - 1 = {folds - 1}, or None.")
        self.batch_size, self.seed, self.predict_split, self.fold, self.folds = batch_size, seed, predict_split, fold, folds
        self.splits: dict[str, Examples] = {}

    @property
    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def on_device(self, split: str) -> Examples:
        self.splits[split] = tuple(tensor.to(self.device) for tensor in self.splits[split])
        return self.splits[split]

    def train_and_val(self, rest: Items, labels: Sequence | np.ndarray | None,
                      draw: Callable[[], tuple[Items, Items]]) -> tuple[Items, Items]:
        """The non-test rows as ``(train, val)``: ``fold_split`` when folding, else ``draw()``."""
        return fold_split(rest, labels, self.fold, self.folds, self.seed) if self.fold is not None else draw()

    def train_dataloader(self) -> Any:
        # overfit_batches repeats the first batches unshuffled, as Lightning does with a DataLoader
        return self.batches("train", shuffle=not (self.trainer is not None and self.trainer.overfit_batches > 0))

    def val_dataloader(self) -> Any:
        return self.batches("val", shuffle=False)

    def test_dataloader(self) -> Any:
        return self.batches("test", shuffle=False)

    def predict_dataloader(self) -> Any:
        return self.batches(self.predict_split, shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """What ``load(checkpoint)`` needs to predict on raw inputs (Lightning saves it); plain values only."""
        return {"prediction_inputs": self.prediction_inputs()} if self.splits or getattr(self, "streaming", False) else {}


class TensorDataModule(InMemoryDataModule):
    """Base of the tables: ``load_splits()`` (default: the ``arrays()`` rows that ``row_indices()`` names) gives raw
    ``(inputs, targets)``; ``feature_map`` makes the model inputs, standardised with the training rows' statistics."""

    feature_names: list[str] | None = None  # None: x0, x1, ...
    output_names: list[str] | None = None  # None: y0, y1, ...
    feature_map: nn.Module | None = None

    def __init__(self, batch_size: int | None = None, standardize: bool = True, seed: int = 0,
                 predict_split: Split = "test", fold: int | None = None, folds: int = 5,
                 standardize_target: bool = False) -> None:
        super().__init__(batch_size, seed, predict_split, fold, folds)
        self.standardize, self.mean, self.std = standardize, None, None
        self.standardize_target, self.target_mean, self.target_std = standardize_target, None, None

    def load_splits(self) -> dict[str, Examples]:
        inputs, targets = (torch.from_numpy(array) for array in self.arrays()[:2])
        return {name: (inputs[rows], targets[rows]) for name, rows in self.row_indices().items()}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits, owner = self.load_splits(), type(self).__name__
        check_finite(owner, splits)
        self.raw_inputs = {name: inputs for name, (inputs, _) in splits.items()}
        splits = {name: (self.to_features(inputs), targets) for name, (inputs, targets) in splits.items()}
        if self.standardize:
            self.mean, self.std = fit_scale(splits["train"][0], self.input_names(splits["train"][0].shape[1]), owner, "input")
            splits = {name: (self.standardize_inputs(inputs), targets) for name, (inputs, targets) in splits.items()}
            check_finite(owner, splits, after="standardising")
        if self.standardize_target:
            if not (targets := splits["train"][1]).is_floating_point():
                raise ConfigError(f"standardize_target=True: {owner}'s targets are class labels; it takes a regression target.")
            targets = targets.reshape(len(targets), -1)
            self.target_mean, self.target_std = fit_scale(targets, self.outputs(targets.shape[1]), owner, "target")
        self.splits = splits

    def to_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs if self.feature_map is None else self.feature_map(inputs)

    def standardize_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs if self.mean is None else (inputs - self.mean.to(inputs.device)) / self.std.to(inputs.device)

    def one_hot_levels(self) -> dict[str, list[str]]:
        return {}

    def outputs(self, width: int) -> list[str]:
        return self.output_names or [f"y{i}" for i in range(width)]

    def input_names(self, width: int) -> list[str]:
        """The raw columns' names (one-hot ones ``name=level``) if there are ``width``, else x0, x1, ..."""
        levels = self.one_hot_levels()
        names = [f"{name}={level}" if level is not None else name for name in self.feature_names or []
                 for level in levels.get(name, [None])]
        return names if len(names) == width else [f"x{i}" for i in range(width)]

    def prediction_inputs(self) -> dict[str, Any]:
        targets = self.splits["train"][1]
        classes = getattr(self, "class_names", None) if targets.dtype == torch.int64 else None
        classes = None if classes is None else [str(name) for name in classes]  # numpy strings are not plain values
        return {"kind": "table", "features": self.feature_names or [f"x{i}" for i in range(self.raw_inputs["train"].shape[1])],
                "categorical": self.one_hot_levels(), "feature_map": None if self.feature_map is None else self.feature_map.spec(),
                "mean": None if self.mean is None else self.mean.tolist(), "std": None if self.std is None else self.std.tolist(),
                "target": getattr(self, "target", None), "class_names": classes,
                "outputs": None if classes else self.outputs(targets.shape[-1])}

    def input_columns(self, split: str) -> tuple[list[str], list[list[Any]]]:
        """The split's raw inputs as a predictions CSV shows them: names and rows."""
        if not self.splits:
            self.setup()
        inputs = self.raw_inputs[split]
        return self.input_names(inputs.shape[1]), inputs.tolist()

    def batches(self, split: str, shuffle: bool) -> TensorBatches:
        inputs, targets = self.on_device(split)
        shuffle = shuffle and self.batch_size is not None  # full-batch training needs no order
        return TensorBatches(inputs, targets, self.batch_size, shuffle, order_seed(self), *trainer_state(self, shuffle))
