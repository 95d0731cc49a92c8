"""Images held in memory as uint8 tensors: the batch path with whole-batch augmentation, and the base
both image datamodules (Fashion-MNIST, a folder of your own images) build on."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from datamodules.tensor import InMemoryDataModule, TensorBatches, trainer_epoch, trainer_shard
from lightning_models.checks import ConfigError, check_positive


class ImageBatches(TensorBatches):
    """Batches of a uint8 image tensor kept on the training device, made model inputs by ``transform``.

    Replaces a DataLoader for data that fits in (GPU) memory: no workers, no per-sample
    Python, no host-to-device copy per step. Order and augmentation depend on ``seed`` and the
    epoch only, so resumed runs see the same batches. ``augment`` adds a random horizontal flip and a
    random crop with ``crop_padding``-pixel zero padding, done on whole batches, from epoch
    ``augment_from_epoch`` on (0-based; earlier epochs are clean).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool, seed: int,
                 epoch: Callable[[], int] | None = None, rank: int = 0, world_size: int = 1,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, augment: bool = False,
                 crop_padding: int = 2, augment_from_epoch: int = 0):
        super().__init__(images, labels, batch_size, shuffle, seed, epoch, rank, world_size, transform)
        self.augment, self.crop_padding, self.augment_from_epoch = augment, crop_padding, augment_from_epoch

    def batch(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        if self.augment and epoch >= self.augment_from_epoch:
            images = self.random_flip_and_crop(images)
        return super().batch(images, epoch)

    def random_flip_and_crop(self, images: torch.Tensor) -> torch.Tensor:
        """Grey (N, H, W) or colour (N, C, H, W) uint8 images, each flipped and shifted on its own (all its
        channels alike)."""
        count, height, width = images.shape[0], images.shape[-2], images.shape[-1]
        device, colour = images.device, images.ndim == 4
        flip = torch.rand(count, generator=self.generator, device=device) < 0.5
        images = torch.where(flip.view(count, *(1,) * (images.ndim - 1)), images.flip(-1), images)
        padding = self.crop_padding
        if not padding:
            return images
        padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
        shifts = torch.randint(0, 2 * padding + 1, (2, count), generator=self.generator, device=device)
        rows = (torch.arange(height, device=device) + shifts[0, :, None])[:, :, None]
        cols = (torch.arange(width, device=device) + shifts[1, :, None])[:, None, :]
        if not colour:
            return padded[torch.arange(count, device=device)[:, None, None], rows, cols]
        channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
        return padded[torch.arange(count, device=device)[:, None, None, None], channels, rows[:, None], cols[:, None]]


class ImageDataModule(InMemoryDataModule):
    """Base of the image datamodules: each split is a uint8 image tensor, ``(N, H, W)`` grey or
    ``(N, C, H, W)`` colour, moved once to the training device and served by ``ImageBatches``.

    Subclasses give ``class_names`` and ``image_shape`` (``num_features``/``num_outputs`` follow from them,
    readable as soon as the datamodule is built), ``to_inputs`` (uint8 batch -> normalised float
    ``(N, C, H, W)``), ``denormalize`` (back to [0, 1] pixels, for the panels), and fill ``self.splits``
    in ``setup``.

    Args:
        batch_size: images per batch.
        augment: random horizontal flip and, with ``crop_padding > 0``, a random crop of the image padded
            by that many pixels, on training batches.
        crop_padding: padding of the random crop (0: flips only).
        augment_from_epoch: first epoch (0-based) whose training batches are augmented; the epochs
            before it see clean images.
        seed, predict_split: see ``InMemoryDataModule``.
    """

    class_names: list[str]
    image_shape: tuple[int, int, int]

    def __init__(self, batch_size: int, augment: bool, crop_padding: int, augment_from_epoch: int, seed: int,
                 predict_split: str) -> None:
        super().__init__(batch_size, seed, predict_split)
        check_positive("batch_size", batch_size, integer=True)
        if crop_padding < 0:
            raise ConfigError(f"crop_padding={crop_padding!r} is invalid; expected an integer >= 0.")
        if augment_from_epoch < 0:
            raise ConfigError(f"augment_from_epoch={augment_from_epoch!r} is invalid; expected an integer >= 0.")
        self.augment, self.crop_padding, self.augment_from_epoch = augment, crop_padding, augment_from_epoch

    @property
    def num_features(self) -> int:
        return math.prod(self.image_shape)

    @property
    def num_outputs(self) -> int:
        return len(self.class_names)

    def to_inputs(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def image_batches(self, split: str, shuffle: bool) -> ImageBatches:
        """The split as ``ImageBatches`` on the training device; augmented when shuffled (training)."""
        images, labels = self.on_device(split)
        return ImageBatches(images, labels, self.batch_size, shuffle, self.seed, trainer_epoch(self),
                            *trainer_shard(self, shuffle), transform=self.to_inputs, augment=self.augment and shuffle,
                            crop_padding=self.crop_padding, augment_from_epoch=self.augment_from_epoch)
