"""Images in memory as uint8 tensors: augmented batches, and the base of the image datamodules."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.tensor import Examples, InMemoryDataModule, TensorBatches, order_seed, seed_for_epoch, trainer_state
from lightning_models.checks import ConfigError, check_positive

RANK_SEED_STRIDE = 1_000_003


class ImageBatches(TensorBatches):
    """Augmented ``TensorBatches`` of uint8 images; rank r > 0 draws from ``(seed + r * RANK_SEED_STRIDE, epoch)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool, seed: int,
                 epoch: Callable[[], int] | None = None, rank: int = 0, world_size: int = 1,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, augment: bool = False,
                 crop_padding: int = 2, augment_from_epoch: int = 0):
        super().__init__(images, labels, batch_size, shuffle, seed, epoch, rank, world_size, transform)
        self.augment, self.crop_padding, self.augment_from_epoch = augment, crop_padding, augment_from_epoch
        self.draws = self.generator if rank == 0 else torch.Generator(device=images.device)
        self.pass_started = False

    def __iter__(self) -> Iterator[Examples]:
        self.pass_started = True
        yield from super().__iter__()

    def batch(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        if self.augment and epoch >= self.augment_from_epoch:
            if self.pass_started and self.draws is not self.generator:
                seed_for_epoch(self.draws, self.seed + RANK_SEED_STRIDE * self.rank, epoch)
            self.pass_started = False
            images = self.random_flip_and_crop(images)
        return super().batch(images, epoch)

    def random_flip_and_crop(self, images: torch.Tensor) -> torch.Tensor:
        count, device, padding = images.shape[0], images.device, self.crop_padding
        flip = torch.rand(count, generator=self.draws, device=device) < 0.5
        images = torch.where(flip.view(count, *(1,) * (images.ndim - 1)), images.flip(-1), images)
        if not padding:
            return images
        stack = images if images.ndim == 4 else images.unsqueeze(1)
        padded = torch.nn.functional.pad(stack, (padding,) * 4)
        shifts = torch.randint(0, 2 * padding + 1, (2, count), generator=self.draws, device=device)
        rows = (torch.arange(stack.shape[2], device=device) + shifts[0, :, None])[:, None, :, None]
        cols = (torch.arange(stack.shape[3], device=device) + shifts[1, :, None])[:, None, None, :]
        channels = torch.arange(stack.shape[1], device=device)[None, :, None, None]
        cropped = padded[torch.arange(count, device=device)[:, None, None, None], channels, rows, cols]
        return cropped if images.ndim == 4 else cropped.squeeze(1)


class ImageDataModule(InMemoryDataModule):
    """Base of the image datamodules: uint8 splits in memory, or ``stream(split)`` through a DataLoader."""

    class_names: list[str]
    image_shape: tuple[int, int, int]
    streaming, num_workers = False, 0

    def __init__(self, batch_size: int, augment: bool, crop_padding: int, augment_from_epoch: int, seed: int,
                 predict_split: str, fold: int | None = None, folds: int = 5) -> None:
        super().__init__(batch_size, seed, predict_split, fold, folds)
        check_positive("batch_size", batch_size, integer=True)
        for name, value in (("crop_padding", crop_padding), ("augment_from_epoch", augment_from_epoch)):
            if value < 0:
                raise ConfigError(f"{name}={value!r} is invalid; expected an integer >= 0.")
        self.augment, self.crop_padding, self.augment_from_epoch = augment, crop_padding, augment_from_epoch

    @property
    def num_features(self) -> int:
        return math.prod(self.image_shape)

    @property
    def num_outputs(self) -> int:
        return len(self.class_names)

    def prediction_inputs(self) -> dict[str, Any]:
        mean, std = self.normalization()
        return {"kind": "image", "image_shape": list(self.image_shape), "mean": mean, "std": std,
                "class_names": [str(name) for name in self.class_names]}

    def stream(self, split: str) -> tuple[Dataset, dict[str, Any]]:
        """The split's Dataset and the DataLoader options of its own."""
        raise NotImplementedError

    def batches(self, split: str, shuffle: bool) -> ImageBatches | DataLoader:
        if self.streaming:
            dataset, options = self.stream(split)
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                              pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(order_seed(self)),
                              **options)
        images, labels = self.on_device(split)
        return ImageBatches(images, labels, self.batch_size, shuffle, order_seed(self), *trainer_state(self, shuffle),
                            transform=self.to_inputs, augment=self.augment and shuffle,
                            crop_padding=self.crop_padding, augment_from_epoch=self.augment_from_epoch)
