"""Data in memory as tensors: seeded splits and folds, batches in an order set by (seed, epoch), shared datamodule plumbing."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from datamodules.scaling import check_finite, fit_scale
from lightning_models.checks import ConfigError, check_choice, check_positive

Examples = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets) of one split or one batch
Split = Literal["train", "val", "test"]
SPLITS = ("train", "val", "test")
Items = TypeVar("Items", np.ndarray, list)


def stratified_split(items: Items, fraction: float, labels: Sequence[int] | np.ndarray | None,
                     seed: int) -> tuple[Items, Items]:
    """``(kept, drawn)``: a seeded draw of ``fraction`` of ``items`` (nothing when 0) that keeps each label's
    share (``labels[i]`` is item i's; ``None``: a plain random draw), in the draw's order. A class too small to
    be divided raises scikit-learn's ValueError."""
    if not fraction:
        return items, items[:0]
    return tuple(train_test_split(items, test_size=fraction, stratify=labels, random_state=seed))


def fold_split(items: Items, labels: Sequence | np.ndarray | None, fold: int, folds: int, seed: int) -> tuple[Items, Items]:
    """``(train, val)`` for cross-validation: ``items`` dealt into ``folds`` seeded folds, stratified by
    ``labels`` (scikit-learn's StratifiedKFold; ``None``: KFold, for regression); fold ``fold`` is ``val``,
    the others ``train``, both in ``items``' order."""
    classes, counts = np.unique(labels if labels is not None else np.zeros(len(items)), return_counts=True)
    if counts.min() < folds:
        which = f" of class {classes[counts.argmin()].item()!r}" if labels is not None else ""
        raise ConfigError(f"folds={folds} is more than the {counts.min()} rows{which}; use fewer folds.")
    splitter = StratifiedKFold if labels is not None else KFold
    train, val = list(splitter(folds, shuffle=True, random_state=seed).split(np.zeros(len(items)), labels))[fold]
    return tuple(items[rows] if isinstance(items, np.ndarray) else [items[row] for row in rows] for rows in (train, val))


def sorted_splits(train: Items, val: Items, test: Items) -> dict[str, Items]:
    """Each split sorted (by row number or file name); no ``val`` rows: validate on ``train``."""
    ordered = np.sort if isinstance(train, np.ndarray) else sorted
    return {"train": ordered(train), "val": ordered(val if len(val) else train), "test": ordered(test)}


def trainer_state(datamodule: pl.LightningDataModule, shuffle: bool) -> tuple[Callable[[], int] | None, int, int]:
    """``(epoch, rank, world_size)``: a function giving the trainer's current epoch (None without a trainer), and
    the ranks a split is dealt out over: the trainer's for shuffled (training) splits, else ``(0, 1)``."""
    trainer = datamodule.trainer
    if trainer is None:
        return None, 0, 1
    return (lambda: trainer.current_epoch), *((trainer.global_rank, trainer.world_size) if shuffle else (0, 1))


def order_seed(datamodule: pl.LightningDataModule) -> int:
    """The seed of batch order, augmentation and fresh samples: the datamodule's ``seed`` (which alone sets the
    split) plus the run's seed, so that each seed of a run draws its own batches on the same split
    (lightning_models/workflows/seeds.py). The run's seed is Lightning's ``PL_GLOBAL_SEED``, which ``seed_everything`` sets;
    0 without a trainer."""
    attached = datamodule.trainer is not None
    return datamodule.seed + (int(os.environ.get("PL_GLOBAL_SEED", 0)) if attached else 0)


def seed_for_epoch(generator: torch.Generator, seed: int, epoch: int) -> torch.Generator:
    """Reseed ``generator`` from ``(seed, epoch)``: every random draw of an epoch (order, augmentation,
    fresh samples) is then a function of them, so a resumed run draws what an uninterrupted one would."""
    return generator.manual_seed(seed + 100_003 * epoch)


def epoch_order(count: int, generator: torch.Generator, seed: int, epoch: int, shuffle: bool, rank: int,
                world_size: int) -> torch.Tensor:
    """This rank's rows for one epoch: every ``world_size``-th of one seeded order (equal shares: DDP needs the
    same number of steps on every rank)."""
    seed_for_epoch(generator, seed, epoch)
    device = generator.device
    order = torch.randperm(count, generator=generator, device=device) if shuffle else torch.arange(count, device=device)
    return order[: count - count % world_size][rank::world_size]


class TensorBatches:
    """``(inputs, targets)`` batches sliced from tensors that stay where they are: Lightning takes any iterable
    with ``__len__`` as a dataloader. ``batch_size=None``: one full batch. The order is ``epoch_order``'s, so a
    resumed run sees the batches an uninterrupted one would. ``transform`` maps stored to model inputs."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int | None, shuffle: bool, seed: int,
                 epoch: Callable[[], int] | None = None, rank: int = 0, world_size: int = 1,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.inputs, self.targets = inputs, targets
        self.batch_size = min(batch_size or len(inputs), len(inputs)) or 1
        self.shuffle, self.seed, self.transform = shuffle, seed, transform
        self.epoch = epoch or itertools.count().__next__  # without a trainer, each pass is the next epoch
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator(device=inputs.device)

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
        """Model inputs for a batch of stored inputs."""
        return inputs if self.transform is None else self.transform(inputs)


class InMemoryDataModule(pl.LightningDataModule):
    """Plumbing shared by datamodules whose splits are tensors in memory: ``self.splits`` maps ``train``/``val``/
    ``test`` to ``(inputs, targets)``, each moved once to the training device; ``batches(split, shuffle)``, a
    subclass's, makes a split batches. ``fold``/``folds``: see ``TensorDataModule``."""

    def __init__(self, batch_size: int | None, seed: int, predict_split: str = "test", fold: int | None = None,
                 folds: int = 5) -> None:
        super().__init__()
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        check_choice("predict_split", predict_split, SPLITS)
        if type(folds) is not int or folds < 2:  # type(): True is no number of folds
            raise ConfigError(f"folds={folds!r} is invalid; expected an integer >= 2.")
        if fold is not None and (type(fold) is not int or not 0 <= fold < folds):
            raise ConfigError(f"fold={fold!r} is invalid; expected an integer from 0 to folds - 1 = {folds - 1}, or None.")
        self.batch_size, self.seed, self.predict_split, self.fold, self.folds = batch_size, seed, predict_split, fold, folds
        self.splits: dict[str, Examples] = {}

    @property
    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def on_device(self, split: str) -> Examples:
        """The split's tensors on the training device (moved once, kept there)."""
        self.splits[split] = tuple(tensor.to(self.device) for tensor in self.splits[split])
        return self.splits[split]

    def train_and_val(self, rest: Items, labels: Sequence | np.ndarray | None,
                      draw: Callable[[], tuple[Items, Items]]) -> tuple[Items, Items]:
        """The non-test rows ``rest`` divided into ``(train, val)``: by ``fold_split`` when folding, else ``draw()``."""
        return fold_split(rest, labels, self.fold, self.folds, self.seed) if self.fold is not None else draw()

    def train_dataloader(self) -> TensorBatches:
        # overfit_batches (the overfit preset) repeats the first batches, unshuffled and unaugmented, as Lightning
        # does for a DataLoader's sampler
        overfit = self.trainer is not None and self.trainer.overfit_batches > 0
        return self.batches("train", shuffle=not overfit)

    def val_dataloader(self) -> TensorBatches:
        return self.batches("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self.batches("test", shuffle=False)

    def predict_dataloader(self) -> TensorBatches:
        return self.batches(self.predict_split, shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """What prediction needs of this datamodule, saved by Lightning into every checkpoint: ``load(checkpoint)``
        predicts on raw inputs with it when the data and the config are gone. Plain values only (``weights_only``)."""
        return {"prediction_inputs": self.prediction_inputs()} if self.splits else {}

    def prediction_inputs(self) -> dict[str, Any]:
        raise NotImplementedError


class TensorDataModule(InMemoryDataModule):
    """Shared base for small tabular and synthetic datasets: ``load_splits()`` returns raw ``{"train", "val",
    "test"}`` splits as ``(inputs, targets)`` float/long tensors (a subclass's own, or rows of its ``arrays()``).

    Args:
        batch_size: rows per batch; ``None`` trains full-batch, as the source texts do.
        standardize: scale inputs to zero mean and unit variance, with statistics fitted on the
            training rows only (validation and test rows never leak into them).
        seed: seeds the split and the folds; the shuffling follows it plus the run's seed (``order_seed``).
        predict_split: ``train``, ``val`` or ``test``: what ``scripts/train.py predict`` predicts.
        fold: ``None``, or cross-validation fold ``fold`` (0 to ``folds - 1``): the rows that are not test
            rows are dealt into ``folds`` seeded folds, stratified by class for class targets; this fold
            validates, the others train; the test rows stay as they are.
        folds: the number of folds.
        standardize_target: give a regression module the training rows' target mean and std (``target_mean``,
            ``target_std``): ``RegressionModule`` then fits the standardised target and answers in the target's units.

    A column that does not vary over the training rows gets scale 1 (a warning names it).
    """

    def __init__(self, batch_size: int | None = None, standardize: bool = True, seed: int = 0,
                 predict_split: Split = "test", fold: int | None = None, folds: int = 5,
                 standardize_target: bool = False) -> None:
        super().__init__(batch_size, seed, predict_split, fold, folds)
        self.standardize, self.mean, self.std = standardize, None, None  # mean, std: the training rows', in setup
        self.standardize_target, self.target_mean, self.target_std = standardize_target, None, None

    def load_splits(self) -> dict[str, Examples]:
        """The rows of ``arrays()``'s inputs and targets that ``row_indices()`` gives each split."""
        inputs, targets = (torch.from_numpy(array) for array in self.arrays()[:2])
        return {name: (inputs[rows], targets[rows]) for name, rows in self.row_indices().items()}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # setup may be called once per stage
            return
        splits, owner = self.load_splits(), type(self).__name__
        check_finite(owner, splits)
        self.raw_inputs = {name: inputs for name, (inputs, _) in splits.items()}  # for the predictions CSV
        if self.standardize:
            self.mean, self.std = fit_scale(splits["train"][0], self.input_names(splits["train"][0].shape[1]), owner, "input")
            splits = {name: (self.standardize_inputs(inputs), targets) for name, (inputs, targets) in splits.items()}
            check_finite(owner, splits, after="standardising")
        if self.standardize_target:
            targets = splits["train"][1]
            if not targets.is_floating_point():
                raise ConfigError(f"standardize_target=True: {owner}'s targets are class labels; it takes a numeric "
                                  "(regression) target, or set standardize_target: false.")
            targets = targets.reshape(len(targets), -1)
            names = self.output_names or [f"y{i}" for i in range(targets.shape[1])]
            self.target_mean, self.target_std = fit_scale(targets, names, owner, "target")
        self.splits = splits

    def input_names(self, width: int) -> list[str]:
        """The names of the raw input columns (a categorical column's as ``name=level``), or ``x0``, ``x1``..."""
        levels = self.one_hot_levels()
        names = [f"{name}={level}" if level is not None else name for name in self.feature_names or []
                 for level in levels.get(name, [None])]
        return names if len(names) == width else [f"x{i}" for i in range(width)]

    def one_hot_levels(self) -> dict[str, list[str]]:
        """Each one-hot encoded column's levels, in the one-hot order (none here)."""
        return {}

    feature_names: list[str] | None = None  # the raw input columns; None: x0, x1, ...
    output_names: list[str] | None = None  # what a regression or reconstruction predicts; None: y0, y1, ...
    transform: str | None = None  # a fixed feature map from the raw columns to the model's inputs (``predictor.TRANSFORMS``)

    def prediction_inputs(self) -> dict[str, Any]:
        """A table's inputs: raw columns in order, their standardisation, the class or output names."""
        width = len(self.feature_names) if self.feature_names else self.splits["train"][0].shape[1]
        classes = getattr(self, "class_names", None) if self.splits["train"][1].dtype == torch.int64 else None
        classes = None if classes is None else [str(name) for name in classes]  # numpy strings are not plain values
        outputs = None if classes else (self.output_names or [f"y{i}" for i in range(self.splits["train"][1].shape[-1])])
        return {"kind": "table", "features": self.feature_names or [f"x{i}" for i in range(width)],
                "categorical": self.one_hot_levels(),
                "transform": self.transform, "mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist(), "target": getattr(self, "target", None),
                "class_names": classes, "outputs": outputs}

    def input_columns(self, split: str) -> tuple[list[str], list[list[Any]]]:
        """The split's inputs as a predictions CSV shows them: the raw columns' names and each row's values."""
        spec, inputs = self.prediction_inputs(), self.raw_inputs[split]
        names = [f"{name}={level}" if level is not None else name for name in spec["features"]
                 for level in spec["categorical"].get(name, [None])]
        inputs = inputs[:, : len(names)] if self.transform == "powers_1_to_4" else inputs  # x, then its powers
        return (names if len(names) == inputs.shape[1] else [f"input_{i}" for i in range(inputs.shape[1])]), inputs.tolist()

    def standardize_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Apply the training-set standardisation (identity when ``standardize=False``)."""
        return inputs if self.mean is None else (inputs - self.mean.to(inputs.device)) / self.std.to(inputs.device)

    def batches(self, split: str, shuffle: bool) -> TensorBatches:
        inputs, targets = self.on_device(split)
        shuffle = shuffle and self.batch_size is not None  # full-batch training needs no order
        return TensorBatches(inputs, targets, self.batch_size, shuffle, order_seed(self), *trainer_state(self, shuffle))
