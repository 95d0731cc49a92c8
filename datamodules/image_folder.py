"""Your own images: one folder per class, trained with one config."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from datamodules.images import ImageDataModule
from datamodules.tensor import SPLITS, Split, stratified_split
from lightning_models.checks import RELATIVE, ConfigError, check_choice, check_fraction, check_positive

Samples = list[tuple[str, int]]  # (file, class index) pairs


class ClassFolders(ImageFolder):
    """torchvision's ImageFolder that takes no hidden folder (the decoded-image cache) for a class."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"no class folder in {directory}")
        return classes, {name: index for index, name in enumerate(classes)}


def scan(root: Path) -> ImageFolder:
    try:
        return ClassFolders(str(root), loader=str)
    except FileNotFoundError as error:
        raise ConfigError(f"{root}: {error}; expected {root}/<class>/<image>.png|jpg, one folder per class.") from None


def read_image(path: str, mode: ImageReadMode) -> torch.Tensor:
    try:
        return decode_image(read_file(path), mode=mode)
    except RuntimeError as error:
        raise ConfigError(f"{path}: the image does not decode ({str(error).splitlines()[0]}).") from None


class Decoded(Dataset):
    """Images decoded one by one to ``size`` (resized, or else another size is an error)."""

    def __init__(self, samples: Samples, mode: ImageReadMode, size: tuple[int, int], resize: bool) -> None:
        self.samples, self.mode, self.size, self.resize = samples, mode, size, resize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = read_image(path, self.mode)
        if tuple(image.shape[-2:]) != self.size:
            if not self.resize:
                raise ConfigError(f"{path}: {tuple(image.shape[-2:])} pixels, the first image {self.size}; set "
                                  "image_size to resize them all.")
            image = TF.resize(image, list(self.size), antialias=True)
        return image, label


def memory_plan(needed: int, device: torch.device, ranks_here: int, budget: float) -> tuple[bool, str]:
    """Whether ``needed`` bytes fit ``budget`` of this rank's RAM (and GPU memory), and that limit in words."""
    share = f" 1/{ranks_here} of" if ranks_here > 1 else ""
    limits = {f"memory_budget={budget:g} of{share} the RAM": budget * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / ranks_here}
    if device.type == "cuda":
        limits[f"memory_budget={budget:g} of the free memory of {device}"] = budget * torch.cuda.mem_get_info(device)[0]
    name, limit = min(limits.items(), key=lambda item: item[1])
    return needed <= limit, f"{name} ({limit / 1e6:.0f} MB)"


class ImageFolderDataModule(ImageDataModule):
    """Labelled images, ``root/<class>/*`` or ``root/train|val|test/<class>/*`` (docs/own-data.md), decoded in ``setup``."""

    path_arguments = ("root",)

    def __init__(self, root: str, image_size: int | None = None, color: Literal["auto", "grayscale", "rgb"] = "auto",
                 batch_size: int = 64, val_fraction: float = 0.1, test_fraction: float = 0.1, augment: bool = False,
                 crop_padding: int = 2, augment_from_epoch: int = 0, normalize: bool = True, memory_budget: float = 0.5,
                 cache_dir: str | None = None, num_workers: int = 2, seed: int = 0, predict_split: Split = "test",
                 fold: int | None = None, folds: int = 5) -> None:
        super().__init__(batch_size, augment, crop_padding, augment_from_epoch, seed, predict_split, fold, folds)
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
        self.mean, self.std, self.scales = None, None, {}

    @cached_property
    def folders(self) -> dict[str, ImageFolder]:
        if not self.root.is_dir():
            raise ConfigError(f"root={str(self.root.absolute())!r}: no such folder; expected <root>/<class>/<image>.png|jpg ({RELATIVE}).")
        given = {split: self.root / split for split in SPLITS if (self.root / split).is_dir()}
        folders = {split: scan(path) for split, path in given.items()} if "train" in given else {"all": scan(self.root)}
        if len(classes := {tuple(folder.classes) for folder in folders.values()}) > 1:
            raise ConfigError(f"{self.root}: train/val/test hold different class folders ({sorted(classes)}).")
        if len(names := next(iter(classes))) < 2:
            raise ConfigError(f"{self.root}: one class folder only ({names[0]!r}); a classifier needs two or more.")
        return folders

    @property
    def class_names(self) -> list[str]:
        return list(next(iter(self.folders.values())).classes)

    @cached_property
    def image_shape(self) -> tuple[int, int, int]:
        channels = {"grayscale": 1, "rgb": 3}.get(self.color)
        if channels is not None and self.image_size is not None:
            return (channels, self.image_size, self.image_size)
        first = read_image(next(iter(self.folders.values())).samples[0][0], ImageReadMode.UNCHANGED)
        channels = channels or (1 if first.shape[0] in (1, 2) else 3)  # grey (with alpha): one channel
        height, width = (self.image_size, self.image_size) if self.image_size else first.shape[-2:]
        return (channels, int(height), int(width))

    def samples(self) -> dict[str, Samples]:
        found = {split: folder.samples for split, folder in self.folders.items()}
        if "all" in found:
            if not self.test_fraction or self.val_fraction + self.test_fraction >= 1:
                raise ConfigError(f"{self.root}: val_fraction={self.val_fraction:g}, test_fraction={self.test_fraction:g}; "
                                  "expected test_fraction > 0 and val_fraction + test_fraction < 1.")
            (rest, test), fraction = self.draw(found["all"], self.test_fraction), self.val_fraction / (1 - self.test_fraction)
        elif "test" not in found:
            raise ConfigError(f"{self.root}: has train/ but no test/ folder.")
        else:
            rest, test, fraction = found["train"] + found.get("val", []), found["test"], self.val_fraction
        given = (found["train"], found["val"]) if "val" in found else None
        train, val = self.train_and_val(rest, [label for _, label in rest],
                                        lambda: given or (self.draw(rest, fraction) if fraction else (rest, rest)))
        return {"train": train, "val": val, "test": test}

    def draw(self, samples: Samples, fraction: float) -> tuple[Samples, Samples]:
        return tuple(sorted(part) for part in stratified_split(samples, fraction, [label for _, label in samples], self.seed, self.root))

    def decoded(self, samples: Samples) -> Decoded:
        mode = ImageReadMode.GRAY if self.image_shape[0] == 1 else ImageReadMode.RGB
        return Decoded(samples, mode, self.image_shape[1:], resize=self.image_size is not None)

    def decode_all(self, samples: Samples) -> tuple[torch.Tensor, torch.Tensor]:
        images, decoded = torch.empty((len(samples), *self.image_shape), dtype=torch.uint8), self.decoded(samples)
        for index in range(len(samples)):  # no second copy in memory
            images[index] = decoded[index][0]
        return images.squeeze(1) if self.image_shape[0] == 1 else images, torch.tensor([label for _, label in samples])

    def setup(self, stage: str | None = None) -> None:
        if self.splits or self.streaming:
            return
        samples = self.samples()
        self.split_files = {split: [path for path, _ in samples[split]] for split in SPLITS}
        count = sum(len(samples[split]) for split in SPLITS)
        size = f"{count} decoded images ({count * self.num_features / 1e6:.0f} MB)"
        fits, limit = memory_plan(count * self.num_features, self.device, self.trainer.num_devices if self.trainer else 1,
                                  self.memory_budget)
        if not fits:
            self.streaming, self.stream_samples = True, samples
            rank_zero_warn(f"{self.root}: {size} would exceed {limit}; streaming them through a DataLoader with "
                           f"{self.num_workers} workers (slower; no augmentation on this path).")
            self.mean, self.std = self.statistics(self.decode_all(samples["train"][:1000])[0])
            return
        rank_zero_info(f"{self.root}: {size} in memory on {self.device}, within {limit}.")
        digest = hashlib.sha256(repr((self.image_shape[1:], self.image_shape[0])).encode())
        for split in SPLITS:
            for path, label in samples[split]:
                info = os.stat(path)
                digest.update(f"{split}|{path}|{label}|{info.st_size}|{info.st_mtime_ns}\n".encode())
        path = self.cache_dir / f"images-{digest.hexdigest()[:20]}.pt"
        try:
            cached = torch.load(path, weights_only=True)
            rank_zero_info(f"{self.root}: decoded images from {path}")
        except (OSError, RuntimeError, EOFError):
            cached = {split: self.decode_all(samples[split]) for split in SPLITS}
            for folder in (path.parent, Path(tempfile.gettempdir()) / "template-image-cache"):
                with contextlib.suppress(OSError):
                    folder.mkdir(parents=True, exist_ok=True)
                    partial = folder / f"{path.name}.{os.getpid()}.partial"  # DDP ranks may write it at once
                    torch.save(cached, partial)
                    partial.replace(folder / path.name)  # a killed run leaves no half cache
                    self.cache_dir = folder
                    break
        self.splits = {split: tuple(cached[split]) for split in SPLITS}
        self.mean, self.std = self.statistics(self.splits["train"][0])

    def statistics(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of [0, 1] pixels from exact integer sums over chunks (no float copy)."""
        channels, self.scales = self.image_shape[0], {}
        if not self.normalize:
            return torch.zeros(channels), torch.ones(channels)
        stack = images.unsqueeze(1) if images.ndim == 3 else images
        total, squares = torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
        for chunk in stack.split(max(1, 2**24 // max(1, stack[0].numel()))):
            wide = chunk.to(torch.int32)
            total += wide.sum(dim=(0, 2, 3), dtype=torch.int64).double()
            squares += (wide * wide).sum(dim=(0, 2, 3), dtype=torch.int64).double()
        pixels = stack.shape[0] * stack.shape[2] * stack.shape[3]
        mean = total / pixels
        variance = (squares - total * mean) / max(pixels - 1, 1)
        return (mean / 255).float(), (variance.clamp_min(0).sqrt() / 255).float().clamp_min(1e-6)

    def scale(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self.scales:
            shape = (1, self.image_shape[0], 1, 1)
            self.scales[device] = (self.mean.to(device).view(shape), self.std.to(device).view(shape))
        return self.scales[device]

    def to_inputs(self, images: torch.Tensor) -> torch.Tensor:
        images = (images.unsqueeze(1) if images.ndim == 3 else images).float().div_(255)
        mean, std = self.scale(images.device)
        return images.sub_(mean).div_(std)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self.scale(images.device)
        return images * std + mean

    def normalization(self) -> tuple[list[float], list[float]]:
        return self.mean.tolist(), self.std.tolist()

    def input_columns(self, split: str) -> tuple[list[str], list[list[str]]]:
        return ["file"], [[path] for path in self.split_files[split]]

    def collate(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        return self.to_inputs(torch.stack([image for image, _ in items])), torch.tensor([label for _, label in items])

    def stream(self, split: str) -> tuple[Dataset, dict[str, Any]]:
        return self.decoded(self.stream_samples[split]), {"collate_fn": self.collate}
