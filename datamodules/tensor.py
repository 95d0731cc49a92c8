"""Base for small data held in memory as tensors: splits, train-only scaling, device-resident batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytorch_lightning as pl
import torch

from lightning_models.checks import ConfigError, check_positive

Split = tuple[torch.Tensor, torch.Tensor]


class EpochCounter:
    """Counts calls: the epoch number of an iterable used without a trainer."""

    def __init__(self) -> None:
        self.count = -1

    def __call__(self) -> int:
        self.count += 1
        return self.count


def trainer_epoch(datamodule: pl.LightningDataModule) -> Callable[[], int] | None:
    """The attached trainer's current epoch, read when an epoch starts; None without a trainer."""
    return (lambda: datamodule.trainer.current_epoch) if datamodule.trainer is not None else None


def trainer_shard(datamodule: pl.LightningDataModule, shuffle: bool) -> tuple[int, int]:
    """``(rank, world_size)`` over which a split is dealt out: the trainer's for shuffled (training)
    splits; ``(0, 1)`` without a trainer and for unshuffled splits, which every rank sees whole."""
    trainer = datamodule.trainer
    return (trainer.global_rank, trainer.world_size) if trainer is not None and shuffle else (0, 1)


def epoch_order(count: int, generator: torch.Generator, seed: int, epoch: int, shuffle: bool, rank: int,
                world_size: int) -> torch.Tensor:
    """This rank's row order for one epoch, on the generator's device. The generator is reseeded from
    ``(seed, epoch)`` (so later draws, e.g. augmentation, are a function of them too); rank r takes
    every ``world_size``-th row, in equal shares: DDP needs the same number of steps on every rank."""
    generator.manual_seed(seed + 100_003 * epoch)
    device = generator.device
    order = torch.randperm(count, generator=generator, device=device) if shuffle else torch.arange(count, device=device)
    return order[: count - count % world_size][rank::world_size]


class TensorBatches:
    """An iterable of ``(inputs, targets)`` batches sliced from tensors that stay where they are.

    ``batch_size=None`` (or larger than the data) yields the full batch. The shuffled order
    depends on ``seed`` and the epoch number only (``epoch()``, the trainer's current epoch), so a
    run resumed from a checkpoint sees the same batches as an uninterrupted one. Lightning accepts
    any iterable with ``__len__`` as a dataloader; this one has no workers and no per-sample Python.

    Under DDP (``world_size > 1``, see ``trainer_shard``) a shuffled split is dealt out by
    ``epoch_order``: every rank draws the same order and takes its own equal share.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int | None, shuffle: bool, seed: int,
                 epoch: Callable[[], int] | None = None, rank: int = 0, world_size: int = 1):
        self.inputs, self.targets = inputs, targets
        self.batch_size = min(batch_size or len(inputs), len(inputs)) or 1
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch or EpochCounter()
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator()

    def __len__(self) -> int:
        return -(-(len(self.inputs) // self.world_size) // self.batch_size)

    def __iter__(self) -> Iterator[Split]:
        count = len(self.inputs)
        if self.batch_size >= count and not self.shuffle:
            yield self.inputs, self.targets
            return
        order = epoch_order(count, self.generator, self.seed, self.epoch(), self.shuffle, self.rank, self.world_size)
        order = order.to(self.inputs.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.inputs[index], self.targets[index]


class TensorDataModule(pl.LightningDataModule):
    """Shared base for in-memory datasets. Subclasses implement ``load_splits``.

    Args:
        batch_size: rows per batch; ``None`` trains full-batch, as the seeds do.
        standardize: scale inputs to zero mean and unit variance, with statistics fitted on the
            training rows only (validation and test rows never leak into them).
        seed: seeds the split and the shuffling.

    Tensors are moved once to the trainer's device, so each step costs no host-to-device copy.
    """

    def __init__(self, batch_size: int | None = None, standardize: bool = True, seed: int = 0) -> None:
        super().__init__()
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        self.batch_size = batch_size
        self.standardize = standardize
        self.seed = seed
        self.splits: dict[str, Split] = {}
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def load_splits(self) -> dict[str, Split]:
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
            splits = {name: (self.scale(inputs), targets) for name, (inputs, targets) in splits.items()}
        self.splits = splits

    def scale(self, inputs: torch.Tensor) -> torch.Tensor:
        """Apply the training-set standardisation (identity when ``standardize=False``)."""
        if self.mean is None:
            return inputs
        return (inputs - self.mean.to(inputs.device)) / self.std.to(inputs.device)

    @property
    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def batches(self, split: str, shuffle: bool = False) -> TensorBatches:
        inputs, targets = self.splits[split]
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        self.splits[split] = (inputs, targets)  # keep the device copy for the next epoch
        return TensorBatches(inputs, targets, self.batch_size, shuffle, self.seed, trainer_epoch(self),
                             *trainer_shard(self, shuffle))

    def train_dataloader(self) -> TensorBatches:
        return self.batches("train", shuffle=self.batch_size is not None)

    def val_dataloader(self) -> TensorBatches:
        return self.batches("val")

    def test_dataloader(self) -> TensorBatches:
        return self.batches("test")

    def predict_dataloader(self) -> TensorBatches:
        return self.batches("test")
