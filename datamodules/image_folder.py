"""Your own images: ``root/<class>/*.png|jpg`` (or ``root/train|val|test/<class>/...``) trained with one config."""

from __future__ import annotations

import contextlib
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
from datamodules.tensor import SPLITS, Split, order_seed, stratified_split
from lightning_models.checks import RELATIVE, ConfigError, check_choice, check_fraction, check_positive


class ClassFolders(ImageFolder):
    """torchvision's ImageFolder that takes no hidden folder (such as the decoded-image cache) for a class."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"no class folder in {directory}")
        return classes, {name: index for index, name in enumerate(classes)}


def scan(root: Path) -> ImageFolder:
    """The (file, class index) pairs under ``root``, not decoded."""
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
    """The images of an ImageFolder, decoded one by one to ``size`` (resized, or else another size is an error)."""

    def __init__(self, samples: list[tuple[str, int]], mode: ImageReadMode, size: tuple[int, int], resize: bool) -> None:
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
    """Whether ``needed`` bytes fit ``budget`` of what one rank may take, and the limit in words: the machine's RAM
    divided by the ``ranks_here`` processes training on it (each loads the whole set), and on a CUDA device also the
    device's free memory, which the splits are copied to."""
    limits = {f"memory_budget={budget:g} of 1/{ranks_here} of the RAM" if ranks_here > 1 else f"memory_budget={budget:g} "
              "of the RAM": budget * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / ranks_here}
    if device.type == "cuda":
        limits[f"memory_budget={budget:g} of the free memory of {device}"] = budget * torch.cuda.mem_get_info(device)[0]
    name, limit = min(limits.items(), key=lambda item: item[1])
    return needed <= limit, f"{name} ({limit / 1e6:.0f} MB)"


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
        memory_budget: largest share the decoded images may take of this rank's share of the machine's RAM
            (the RAM divided by the processes training on it) and, on a CUDA device, of the device's free
            memory (``torch.cuda.mem_get_info``), where the splits then live. Within it, every image is
            decoded once into a uint8 tensor, cached on disk (``cache_dir``, default
            ``<root>/.template-cache``; rebuilt when a file changes) and trained through the fast
            in-memory batch path; beyond it, images stream through a DataLoader with ``num_workers``
            (pinned memory on CUDA). Setup says which it chose.
        seed, predict_split, fold, folds: see ``TensorDataModule``; folds divide the images that are not test
            images (with given folders: ``train`` and ``val``), stratified by class.

    The folder is listed when the class names or the image shape are first asked for (by the CLI right away),
    decoded in ``setup``. Example: ``ImageFolderDataModule(root="data/flowers", image_size=64, augment=True)``.
    """

    path_arguments = ("root",)  # relative: to the config file that names it (lightning_models.training.data_paths)

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
        self.mean, self.std, self.streaming = None, None, False  # mean, std: the training images', in setup
        self.scales: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # their copies on each device

    @cached_property
    def folders(self) -> dict[str, ImageFolder]:
        """``{"all": ...}`` or ``{"train": ..., "val": ..., "test": ...}``: the listed files, not decoded."""
        if not self.root.is_dir():
            raise ConfigError(f"root={str(self.root.absolute())!r}: no such folder; expected <root>/<class>/<image>.png|jpg ({RELATIVE}).")
        given = {split: self.root / split for split in SPLITS if (self.root / split).is_dir()}
        folders = {split: scan(path) for split, path in given.items()} if "train" in given else {"all": scan(self.root)}
        classes = {tuple(folder.classes) for folder in folders.values()}
        if len(classes) > 1:
            raise ConfigError(f"{self.root}: train/val/test hold different class folders ({sorted(classes)}).")
        if len(names := next(iter(classes))) < 2:
            raise ConfigError(f"{self.root}: one class folder only ({names[0]!r}); a classifier needs two or more.")
        return folders

    @property
    def class_names(self) -> list[str]:
        return list(next(iter(self.folders.values())).classes)

    @cached_property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of every decoded image: ``color`` and ``image_size``, else the first image's."""
        channels = {"grayscale": 1, "rgb": 3}.get(self.color)
        if channels is not None and self.image_size is not None:
            return (channels, self.image_size, self.image_size)
        first = read_image(next(iter(self.folders.values())).samples[0][0], ImageReadMode.UNCHANGED)
        if channels is None:  # grey, or grey with alpha: one channel
            channels = 1 if first.shape[0] in (1, 2) else 3
        height, width = (self.image_size, self.image_size) if self.image_size else first.shape[-2:]
        return (channels, int(height), int(width))

    def samples(self) -> dict[str, list[tuple[str, int]]]:
        """Each split's (file, class index) pairs: the folders as given, or a seeded stratified draw."""
        found = {split: folder.samples for split, folder in self.folders.items()}
        if "all" in found:
            if not self.test_fraction or self.val_fraction + self.test_fraction >= 1:
                raise ConfigError(f"{self.root}: val_fraction={self.val_fraction:g}, test_fraction={self.test_fraction:g}; "
                                  "expected test_fraction > 0 and val_fraction + test_fraction < 1.")
            rest, test = self.draw(found["all"], self.test_fraction)
            fraction = self.val_fraction / (1 - self.test_fraction)
        elif "test" not in found:
            raise ConfigError(f"{self.root}: has train/ but no test/ folder.")
        else:
            rest, test, fraction = found["train"] + found.get("val", []), found["test"], self.val_fraction
        given = (found["train"], found["val"]) if "val" in found else None
        train, val = self.train_and_val(rest, [label for _, label in rest],
                                        lambda: given or (self.draw(rest, fraction) if fraction else (rest, rest)))
        return {"train": train, "val": val, "test": test}

    def draw(self, samples: list[tuple[str, int]], fraction: float) -> tuple[list, list]:
        """``(kept, drawn)`` by ``stratified_split``, each sorted by file name."""
        try:
            kept, drawn = stratified_split(samples, fraction, [label for _, label in samples], self.seed)
        except ValueError as error:
            raise ConfigError(f"{self.root}: cannot split {len(samples)} images ({error}); add images or use "
                              "train/val/test folders.") from None
        return sorted(kept), sorted(drawn)

    def decoded(self, samples: list[tuple[str, int]]) -> Decoded:
        mode = ImageReadMode.GRAY if self.image_shape[0] == 1 else ImageReadMode.RGB
        return Decoded(samples, mode, self.image_shape[1:], resize=self.image_size is not None)

    def decode_all(self, samples: list[tuple[str, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images, decoded = torch.empty((len(samples), *self.image_shape), dtype=torch.uint8), self.decoded(samples)
        for index in range(len(samples)):  # into one tensor: no second copy of the set in memory
            images[index] = decoded[index][0]
        return images.squeeze(1) if self.image_shape[0] == 1 else images, torch.tensor([label for _, label in samples])

    def setup(self, stage: str | None = None) -> None:
        if self.splits or self.streaming:
            return
        samples = self.samples()
        self.split_files = {split: [path for path, _ in samples[split]] for split in SPLITS}
        count = sum(len(samples[split]) for split in SPLITS)
        ranks_here = self.trainer.num_devices if self.trainer is not None else 1
        fits, limit = memory_plan(count * self.num_features, self.device, ranks_here, self.memory_budget)
        if not fits:
            self.streaming, self.stream_samples = True, samples
            rank_zero_warn(f"{self.root}: {count} decoded images ({count * self.num_features / 1e6:.0f} MB) would exceed "
                           f"{limit}; streaming them through a DataLoader with {self.num_workers} workers (slower; no "
                           "augmentation on this path).")
            self.mean, self.std, self.scales = *self.statistics(self.decode_all(samples["train"][:1000])[0]), {}
            return
        rank_zero_info(f"{self.root}: {count} decoded images ({count * self.num_features / 1e6:.0f} MB) in memory on "
                       f"{self.device}, within {limit}.")
        digest = hashlib.sha256(repr((self.image_shape[1:], self.image_shape[0])).encode())  # and every file's path, size, time
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
        self.mean, self.std, self.scales = *self.statistics(self.splits["train"][0]), {}

    def statistics(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (sample) std of uint8 ``images`` scaled to [0, 1], from exact integer sums over chunks of
        about 16 M pixels: no float copy of the whole set."""
        channels = self.image_shape[0]
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
        """Mean and std as ``(1, C, 1, 1)`` tensors on ``device``, copied there once (not once per batch)."""
        if device not in self.scales:
            shape = (1, self.image_shape[0], 1, 1)
            self.scales[device] = (self.mean.to(device).view(shape), self.std.to(device).view(shape))
        return self.scales[device]

    def to_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W) or (N, C, H, W) -> float (N, C, H, W), normalised with the training statistics."""
        images = (images.unsqueeze(1) if images.ndim == 3 else images).float().div_(255)
        mean, std = self.scale(images.device)
        return images.sub_(mean).div_(std)

    def input_columns(self, split: str) -> tuple[list[str], list[list[str]]]:
        return ["file"], [[path] for path in self.split_files[split]]

    def normalization(self) -> tuple[list[float], list[float]]:
        return self.mean.tolist(), self.std.tolist()

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self.scale(images.device)
        return images * std + mean

    def batches(self, split: str, shuffle: bool) -> ImageBatches | DataLoader:
        if not self.streaming:
            return self.image_batches(split, shuffle)

        def collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
            return self.to_inputs(torch.stack([image for image, _ in items])), torch.tensor([label for _, label in items])

        return DataLoader(self.decoded(self.stream_samples[split]), batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=collate, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(order_seed(self)))
