"""Images held in memory as uint8 tensors: batches with whole-batch augmentation, and the base of both image datamodules."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from datamodules.tensor import Examples, InMemoryDataModule, TensorBatches, order_seed, seed_for_epoch, trainer_state
from lightning_models.checks import ConfigError, check_positive

RANK_SEED_STRIDE = 1_000_003  # rank r > 0 draws its augmentation from (seed + r * this, epoch)


class ImageBatches(TensorBatches):
    """``TensorBatches`` of a uint8 image tensor kept on the training device. ``augment``: a random horizontal
    flip and a random crop with ``crop_padding``-pixel zero padding, on whole batches, from epoch
    ``augment_from_epoch`` on; like the order, a function of ``seed``, the epoch and the rank.

    Every rank draws the same order (each takes its share of it) from one generator; rank 0 draws its augmentation
    from that generator as it goes on, as a single process does, and rank r > 0 from its own, seeded from
    ``(seed + r * RANK_SEED_STRIDE, epoch)`` at the start of each pass, so ranks do not flip and shift alike."""

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
        """Grey (N, H, W) or colour (N, C, H, W) uint8 images, each flipped and shifted on its own (its channels alike)."""
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
    """Base of the image datamodules: each split is a uint8 image tensor, ``(N, H, W)`` grey or
    ``(N, C, H, W)`` colour, served by ``ImageBatches``. Subclasses give ``class_names``, ``image_shape``,
    ``to_inputs`` (uint8 batch -> normalised float ``(N, C, H, W)``), ``denormalize`` (back to [0, 1]
    pixels, for the panels), and fill ``self.splits`` in ``setup``.

    Args:
        batch_size: images per batch.
        augment: random horizontal flip and, with ``crop_padding > 0``, a random crop of the image padded
            by that many pixels, on training batches.
        crop_padding: padding of the random crop (0: flips only).
        augment_from_epoch: first epoch (0-based) whose training batches are augmented; the epochs
            before it see clean images.
        seed, predict_split, fold, folds: see ``TensorDataModule``.
    """

    class_names: list[str]
    image_shape: tuple[int, int, int]

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

    def state_dict(self) -> dict[str, Any]:
        """What prediction needs (see ``InMemoryDataModule.state_dict``): image shape, normalisation, class names."""
        if not (self.splits or getattr(self, "streaming", False)):
            return {}
        mean, std = self.normalization()
        return {"prediction_inputs": {"kind": "image", "image_shape": list(self.image_shape), "mean": mean, "std": std,
                                      "class_names": [str(name) for name in self.class_names]}}

    def normalization(self) -> tuple[list[float], list[float]]:
        """Per-channel ``(mean, std)`` that ``to_inputs`` applies to pixels scaled to [0, 1]."""
        raise NotImplementedError

    def image_batches(self, split: str, shuffle: bool) -> ImageBatches:
        """The split on the training device, augmented when shuffled (training)."""
        images, labels = self.on_device(split)
        return ImageBatches(images, labels, self.batch_size, shuffle, order_seed(self), *trainer_state(self, shuffle),
                            transform=self.to_inputs, augment=self.augment and shuffle,
                            crop_padding=self.crop_padding, augment_from_epoch=self.augment_from_epoch)
