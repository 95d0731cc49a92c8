"""Data held in memory as tensors: the seeded stratified split, batch order as a function of (seed, epoch),
device-resident batches, and the datamodule plumbing shared by the tabular, synthetic and image datamodules."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, TypeVar

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.model_selection import train_test_split

from lightning_models.checks import ConfigError, check_choice, check_positive

Examples = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets) of one split or one batch
Split = Literal["train", "val", "test"]
SPLITS = ("train", "val", "test")
Items = TypeVar("Items", np.ndarray, list)


def stratified_split(items: Items, fraction: float, labels: Sequence[int] | np.ndarray | None,
                     seed: int) -> tuple[Items, Items]:
    """``(kept, drawn)``: a seeded draw of ``fraction`` of ``items`` (nothing when ``fraction`` is 0) that
    keeps each label's share of them (``labels[i]`` is item i's; ``None``: a plain random draw).

    The datamodules that draw their own validation or test rows (iris, CSV, image folder) all draw them
    here, with scikit-learn's ``train_test_split``. Both parts come in the draw's order (a second draw
    from ``kept`` depends on it); sort a part once it is final. A class too small to be divided raises
    scikit-learn's ValueError.
    """
    if not fraction:
        return items, items[:0]
    kept, drawn = train_test_split(items, test_size=fraction, stratify=labels, random_state=seed)
    return kept, drawn


def trainer_epoch(datamodule: pl.LightningDataModule) -> Callable[[], int] | None:
    """The attached trainer's current epoch, read when an epoch starts; None without a trainer."""
    return (lambda: datamodule.trainer.current_epoch) if datamodule.trainer is not None else None


def trainer_shard(datamodule: pl.LightningDataModule, shuffle: bool) -> tuple[int, int]:
    """``(rank, world_size)`` over which a split is dealt out: the trainer's for shuffled (training)
    splits; ``(0, 1)`` without a trainer and for unshuffled splits, which every rank sees whole."""
    trainer = datamodule.trainer
    return (trainer.global_rank, trainer.world_size) if trainer is not None and shuffle else (0, 1)


def seed_for_epoch(generator: torch.Generator, seed: int, epoch: int) -> torch.Generator:
    """Reseed ``generator`` from ``(seed, epoch)``: every random draw of an epoch (order, augmentation,
    fresh samples) is then a function of them, so a resumed run draws what an uninterrupted one would."""
    return generator.manual_seed(seed + 100_003 * epoch)


def epoch_order(count: int, generator: torch.Generator, seed: int, epoch: int, shuffle: bool, rank: int,
                world_size: int) -> torch.Tensor:
    """This rank's row order for one epoch, on the generator's device (reseeded by ``seed_for_epoch``);
    rank r takes every ``world_size``-th row, in equal shares: DDP needs the same number of steps on
    every rank."""
    seed_for_epoch(generator, seed, epoch)
    device = generator.device
    order = torch.randperm(count, generator=generator, device=device) if shuffle else torch.arange(count, device=device)
    return order[: count - count % world_size][rank::world_size]


class TensorBatches:
    """An iterable of ``(inputs, targets)`` batches sliced from tensors that stay where they are.

    ``batch_size=None`` (or larger than the data) yields the full batch. The shuffled order
    depends on ``seed`` and the epoch number only (``epoch()``, the trainer's current epoch), so a
    run resumed from a checkpoint sees the same batches as an uninterrupted one. Lightning accepts
    any iterable with ``__len__`` as a dataloader; this one has no workers and no per-sample Python.
    ``transform`` (optional) maps each batch of stored inputs to model inputs (e.g. uint8 images to
    normalised floats); subclasses may add random augmentation in ``batch``.

    Under DDP (``world_size > 1``, see ``trainer_shard``) a shuffled split is dealt out by
    ``epoch_order``: every rank draws the same order and takes its own equal share.
    """

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
    """Plumbing shared by datamodules whose splits are tensors in memory: ``self.splits`` maps
    ``train``/``val``/``test`` to ``(inputs, targets)``; each split moves once to the training device
    and stays there; subclasses say how a split becomes batches (``batches``). ``predict_split`` is the
    split ``scripts/train.py predict`` runs on."""

    def __init__(self, batch_size: int | None, seed: int, predict_split: str = "test") -> None:
        super().__init__()
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        check_choice("predict_split", predict_split, SPLITS)
        self.batch_size, self.seed, self.predict_split = batch_size, seed, predict_split
        self.splits: dict[str, Examples] = {}

    @property
    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def on_device(self, split: str) -> Examples:
        """The split's tensors on the training device (moved once, kept for the next epoch)."""
        self.splits[split] = tuple(tensor.to(self.device) for tensor in self.splits[split])
        return self.splits[split]

    def batches(self, split: str, shuffle: bool) -> TensorBatches:
        raise NotImplementedError

    def train_dataloader(self) -> TensorBatches:
        return self.batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self.batches("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self.batches("test", shuffle=False)

    def predict_dataloader(self) -> TensorBatches:
        return self.batches(self.predict_split, shuffle=False)


class TensorDataModule(InMemoryDataModule):
    """Shared base for small tabular and synthetic datasets. Subclasses implement ``load_splits``.

    Args:
        batch_size: rows per batch; ``None`` trains full-batch, as the source texts do.
        standardize: scale inputs to zero mean and unit variance, with statistics fitted on the
            training rows only (validation and test rows never leak into them).
        seed: seeds the split and the shuffling.
        predict_split: ``train``, ``val`` or ``test``: what ``scripts/train.py predict`` predicts.
    """

    def __init__(self, batch_size: int | None = None, standardize: bool = True, seed: int = 0,
                 predict_split: Split = "test") -> None:
        super().__init__(batch_size, seed, predict_split)
        self.standardize = standardize
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def load_splits(self) -> dict[str, Examples]:
        """Return raw ``{"train", "val", "test"}`` splits as ``(inputs, targets)`` float/long tensors."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # setup may be called once per stage
            return
        splits = self.load_splits()
        for name, (inputs, _) in splits.items():
            if inputs.is_floating_point() and not torch.isfinite(inputs).all():
                bad = (~torch.isfinite(inputs)).nonzero()[0].tolist()
                raise ConfigError(
                    f"{type(self).__name__}: the {name} inputs contain NaN or inf (first at row, column {bad}); "
                    "clean or impute the data before training."
                )
        train_inputs = splits["train"][0]
        if self.standardize:
            self.mean = train_inputs.mean(dim=0)
            self.std = train_inputs.std(dim=0).clamp_min(1e-8)
            splits = {name: (self.standardize_inputs(inputs), targets) for name, (inputs, targets) in splits.items()}
        self.splits = splits

    def standardize_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Apply the training-set standardisation (identity when ``standardize=False``)."""
        if self.mean is None:
            return inputs
        return (inputs - self.mean.to(inputs.device)) / self.std.to(inputs.device)

    def batches(self, split: str, shuffle: bool) -> TensorBatches:
        inputs, targets = self.on_device(split)
        shuffle = shuffle and self.batch_size is not None  # full-batch training needs no order
        return TensorBatches(inputs, targets, self.batch_size, shuffle, self.seed, trainer_epoch(self),
                             *trainer_shard(self, shuffle))
