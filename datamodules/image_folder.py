"""Your own images: ``root/<class>/*.png|jpg`` (or ``root/train|val|test/<class>/...``) trained with one config."""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Literal

import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from datamodules.images import ImageBatches, ImageDataModule
from datamodules.tensor import SPLITS, Split, stratified_split
from lightning_models.checks import ConfigError, check_choice, check_fraction, check_positive


class ClassFolders(ImageFolder):
    """torchvision's ImageFolder, hidden folders (such as the decoded-image cache) not taken for classes."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"no class folder in {directory}")
        return classes, {name: index for index, name in enumerate(classes)}


def scan(root: Path) -> ImageFolder:
    """The (file, class index) pairs under ``root``; file names only, nothing is decoded here."""
    try:
        return ClassFolders(str(root), loader=str)
    except FileNotFoundError as error:  # no class folder, or a class folder without images
        raise ConfigError(f"{root}: {error}; expected {root}/<class>/<image>.png|jpg, one folder per class.") from None


def read_image(path: str, mode: ImageReadMode) -> torch.Tensor:
    """One image file as a uint8 ``(C, H, W)`` tensor; an undecodable file is a ConfigError naming it."""
    try:
        return decode_image(read_file(path), mode=mode)
    except RuntimeError as error:
        raise ConfigError(f"{path}: the image does not decode ({str(error).splitlines()[0]}).") from None


class Decoded(Dataset):
    """The images of an ImageFolder, decoded one by one (the streaming path and the cache builder)."""

    def __init__(self, samples: list[tuple[str, int]], mode: ImageReadMode, size: tuple[int, int] | None,
                 resize: bool = True) -> None:
        self.samples, self.mode, self.size, self.resize = samples, mode, size, resize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = read_image(path, self.mode)
        if self.size is not None and tuple(image.shape[-2:]) != self.size:
            if not self.resize:
                raise ConfigError(f"{path}: {tuple(image.shape[-2:])} pixels, the first image {self.size}; set "
                                  "image_size to resize them all.")
            image = TF.resize(image, list(self.size), antialias=True)
        return image, label


class ImageFolderDataModule(ImageDataModule):
    """A folder of labelled images, one sub-folder per class (torchvision's ``ImageFolder``).

    Args:
        root: ``root/<class>/*.png|jpg``, split by a seeded stratified draw (``val_fraction``,
            ``test_fraction``); or ``root/train``, ``root/val``, ``root/test`` (each ``<class>/...``),
            used as given (``val`` may be left out: then drawn from ``train``).
        image_size: resize every image to ``image_size`` x ``image_size``; ``None`` keeps their size,
            which must then be the same for all.
        color: ``grayscale`` (1 channel), ``rgb`` (3), or ``auto``: the first image's.
        batch_size, augment, crop_padding, augment_from_epoch: see ``ImageDataModule``.
        normalize: subtract the training images' per-channel mean and divide by their std.
        memory_budget: largest share of the machine's RAM the decoded images may take. Within it,
            every image is decoded once into a uint8 tensor, cached on disk (``cache_dir``, default
            ``<root>/.template-cache``; rebuilt when a file changes) and trained through the fast
            in-memory batch path; beyond it, images stream through a DataLoader with ``num_workers``.
        seed, predict_split: see ``InMemoryDataModule``.

    Building it reads nothing; the folder is listed when the class names or the image shape are first
    asked for (the CLI asks for the sizes right away, so a bad folder fails before a run starts) and
    the images are decoded in ``setup``. Class names are the folder names, as the panels and
    prediction CSVs show them. Example:
    ``ImageFolderDataModule(root="data/flowers", image_size=64, augment=True)``.
    """

    def __init__(
        self,
        root: str,
        image_size: int | None = None,
        color: Literal["auto", "grayscale", "rgb"] = "auto",
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        augment: bool = False,
        crop_padding: int = 2,
        augment_from_epoch: int = 0,
        normalize: bool = True,
        memory_budget: float = 0.5,
        cache_dir: str | None = None,
        num_workers: int = 2,
        seed: int = 0,
        predict_split: Split = "test",
    ) -> None:
        super().__init__(batch_size, augment, crop_padding, augment_from_epoch, seed, predict_split)
        check_choice("color", color, ("auto", "grayscale", "rgb"))
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction)
        check_fraction("memory_budget", memory_budget, allow_zero=False)
        if image_size is not None:
            check_positive("image_size", image_size, integer=True)
        self.root, self.image_size, self.color = Path(root), image_size, color
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.normalize, self.memory_budget, self.num_workers = normalize, memory_budget, num_workers
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".template-cache"
        self.mean: torch.Tensor | None = None  # the training images' statistics, from setup
        self.std: torch.Tensor | None = None
        self.streaming = False

    @cached_property
    def folders(self) -> dict[str, ImageFolder]:
        """``{"all": ...}`` or ``{"train": ..., "val": ..., "test": ...}``: the listed files, not decoded."""
        if not self.root.is_dir():
            raise ConfigError(f"root={str(self.root)!r}: no such folder; expected <root>/<class>/<image>.png|jpg.")
        given = {split: self.root / split for split in SPLITS if (self.root / split).is_dir()}
        folders = {split: scan(path) for split, path in given.items()} if "train" in given else {"all": scan(self.root)}
        classes = {tuple(folder.classes) for folder in folders.values()}
        if len(classes) > 1:
            raise ConfigError(f"{self.root}: train/val/test hold different class folders ({sorted(classes)}).")
        names = next(iter(classes))
        if len(names) < 2:
            raise ConfigError(f"{self.root}: one class folder only ({names[0]!r}); a classifier needs two or more.")
        return folders

    @property
    def class_names(self) -> list[str]:
        return list(next(iter(self.folders.values())).classes)

    @cached_property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of every image as decoded: from ``color`` and ``image_size``, and
        where they leave it open, from the first image."""
        channels = {"grayscale": 1, "rgb": 3}.get(self.color)
        if channels is not None and self.image_size is not None:
            return (channels, self.image_size, self.image_size)
        first = read_image(next(iter(self.folders.values())).samples[0][0], ImageReadMode.UNCHANGED)
        if channels is None:  # grey, or grey with alpha: one channel
            channels = 1 if first.shape[0] in (1, 2) else 3
        height, width = (self.image_size, self.image_size) if self.image_size else first.shape[-2:]
        return (channels, int(height), int(width))

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.image_shape[1:]

    def samples(self) -> dict[str, list[tuple[str, int]]]:
        """Each split's (file, class index) pairs: the folders as given, or a seeded stratified draw."""
        if "all" not in self.folders:
            found = {split: folder.samples for split, folder in self.folders.items()}
            if "test" not in found:
                raise ConfigError(f"{self.root}: has train/ but no test/ folder.")
            rest = found["train"]
            if "val" not in found and self.val_fraction:
                rest, found["val"] = self.draw(rest, self.val_fraction)
            return {"train": rest, "val": found.get("val") or rest, "test": found["test"]}
        if not self.test_fraction or self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(f"{self.root}: val_fraction={self.val_fraction:g}, test_fraction={self.test_fraction:g}; "
                              "expected test_fraction > 0 and val_fraction + test_fraction < 1.")
        rest, test = self.draw(self.folders["all"].samples, self.test_fraction)
        train, val = self.draw(rest, self.val_fraction / (1 - self.test_fraction)) if self.val_fraction else (rest, rest)
        return {"train": train, "val": val, "test": test}

    def draw(self, samples: list[tuple[str, int]], fraction: float) -> tuple[list, list]:
        """``(kept, drawn)``, each sorted by file name."""
        try:
            kept, drawn = stratified_split(samples, fraction, [label for _, label in samples], self.seed)
        except ValueError as error:
            raise ConfigError(f"{self.root}: cannot split {len(samples)} images ({error}); add images or use "
                              "train/val/test folders.") from None
        return sorted(kept), sorted(drawn)

    def fits_in_memory(self, count: int) -> bool:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return count * self.num_features <= self.memory_budget * total

    def cache_path(self, samples: dict[str, list[tuple[str, int]]]) -> Path:
        """Named by every file's path, size and modification time, and the decoding options."""
        digest = hashlib.sha256(repr((self.size, self.channels)).encode())
        for split in SPLITS:
            for path, label in samples[split]:
                info = os.stat(path)
                digest.update(f"{split}|{path}|{label}|{info.st_size}|{info.st_mtime_ns}\n".encode())
        return self.cache_dir / f"images-{digest.hexdigest()[:20]}.pt"

    def decoded(self, samples: list[tuple[str, int]]) -> Decoded:
        """Decoded to ``image_shape``: resized when ``image_size`` is set, else any other size is an error."""
        mode = ImageReadMode.GRAY if self.channels == 1 else ImageReadMode.RGB
        return Decoded(samples, mode, self.size, resize=self.image_size is not None)

    def decode_all(self, samples: list[tuple[str, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.empty((len(samples), *self.image_shape), dtype=torch.uint8)
        decoded = self.decoded(samples)
        for index in range(len(samples)):
            images[index] = decoded[index][0]
        return images.squeeze(1) if self.channels == 1 else images, torch.tensor([label for _, label in samples])

    def setup(self, stage: str | None = None) -> None:
        if self.splits or self.streaming:
            return
        samples = self.samples()
        count = sum(len(samples[split]) for split in ("train", "val", "test"))
        if not self.fits_in_memory(count):
            self.streaming, self.stream_samples = True, samples
            rank_zero_warn(f"{self.root}: {count} decoded images would exceed memory_budget={self.memory_budget} of "
                           f"RAM; streaming them through a DataLoader with {self.num_workers} workers (slower; "
                           "no augmentation on this path).")
            first = self.decoded(samples["train"][:1000])
            self.mean, self.std = self.statistics(torch.stack([first[index][0] for index in range(len(first))]))
            return
        path = self.cache_path(samples)
        try:
            cached = torch.load(path, weights_only=True)
            rank_zero_info(f"{self.root}: decoded images from {path}")
        except (OSError, RuntimeError, EOFError):
            cached = {split: self.decode_all(samples[split]) for split in ("train", "val", "test")}
            self.save_cache(path, cached)
        self.splits = {split: tuple(cached[split]) for split in ("train", "val", "test")}
        self.mean, self.std = self.statistics(self.splits["train"][0])

    def save_cache(self, path: Path, cached: dict) -> None:
        for folder in (path.parent, Path(tempfile.gettempdir()) / "template-image-cache"):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                partial = folder / f"{path.name}.{os.getpid()}.partial"  # DDP ranks may write it at once
                torch.save(cached, partial)
                partial.replace(folder / path.name)  # a killed run leaves no half cache
                self.cache_dir = folder
                return
            except OSError:
                continue

    def statistics(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.normalize:
            return torch.zeros(self.channels), torch.ones(self.channels)
        pixels = (images.unsqueeze(1) if images.ndim == 3 else images).float().div(255).transpose(0, 1).reshape(self.channels, -1)
        return pixels.mean(1), pixels.std(1).clamp_min(1e-6)

    def to_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W) or (N, C, H, W) -> float (N, C, H, W), normalised with the training statistics."""
        images = (images.unsqueeze(1) if images.ndim == 3 else images).float().div_(255)
        shape = (1, self.channels, 1, 1)
        return images.sub_(self.mean.to(images.device).view(shape)).div_(self.std.to(images.device).view(shape))

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        shape = (1, self.channels, 1, 1)
        return images * self.std.to(images.device).view(shape) + self.mean.to(images.device).view(shape)

    def batches(self, split: str, shuffle: bool) -> ImageBatches | DataLoader:
        return self.stream(split, shuffle) if self.streaming else self.image_batches(split, shuffle)

    def stream(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.decoded(self.stream_samples[split])

        def collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
            images = torch.stack([image for image, _ in items])
            return self.to_inputs(images), torch.tensor([label for _, label in items])

        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=collate, generator=torch.Generator().manual_seed(self.seed))
