"""Fashion-MNIST on torchvision's dataset class, with a fast in-memory input path."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import struct
import tempfile
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from torchvision.datasets import FashionMNIST

from datamodules.images import ImageBatches, ImageDataModule
from datamodules.tensor import Split, order_seed
from lightning_models.checks import RELATIVE, ConfigError, check_choice

FILES = {  # file name -> (IDX magic number, shape of one item)
    "train-images-idx3-ubyte": (2051, (28, 28)),
    "train-labels-idx1-ubyte": (2049, ()),
    "t10k-images-idx3-ubyte": (2051, (28, 28)),
    "t10k-labels-idx1-ubyte": (2049, ()),
}
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's own statistics (training set)


class DatasetError(ConfigError):
    """Fashion-MNIST files are missing, truncated or corrupted."""


def check_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> int:
    """Validate an IDX file's header against its size; returns the number of items."""
    header_size = 4 * (2 + len(item_shape))
    with open(path, "rb") as handle:
        header = handle.read(header_size)
    if len(header) < header_size:
        raise DatasetError(f"{path} is truncated: {len(header)} bytes, shorter than its {header_size}-byte header.")
    found_magic, count, *dims = struct.unpack(f">{2 + len(item_shape)}I", header)
    if found_magic != magic or tuple(dims) != item_shape:
        raise DatasetError(f"{path} is not a Fashion-MNIST IDX file: magic {found_magic}, item shape {tuple(dims)}; "
                           f"expected magic {magic} and item shape {item_shape}.")
    if path.stat().st_size != (expected := header_size + count * (28 * 28 if item_shape else 1)):
        raise DatasetError(f"{path} is truncated or corrupted: {path.stat().st_size} bytes, expected {expected} for {count} items.")
    return count


def prepare_raw_files(data_dir: Path, download: bool) -> Path:
    """A root under which ``FashionMNIST/raw/`` holds the four extracted IDX files, each checked against its
    header: the files where they are; else extracted from ``.gz`` files (into the system temp folder when
    ``data_dir`` is read-only); else downloaded, when allowed."""
    raw, root = data_dir / "FashionMNIST" / "raw", data_dir
    missing = [name for name in FILES if not (raw / name).is_file()]
    absent = (f"Fashion-MNIST not found in {raw.absolute()}: it needs the four files {', '.join(FILES)} (or the same names with .gz). "
              "Download them (online, download=True does it) or point --data.data_dir at the folder holding "
              f"FashionMNIST/raw/ (on this project's machines: --data.data_dir ../shared/data; {RELATIVE}).")
    if missing and all((raw / f"{name}.gz").is_file() for name in missing):
        # without its owner's write bit a folder is read-only even for root: shared data is made so on purpose
        if not (os.access(raw, os.W_OK) and raw.stat().st_mode & stat.S_IWUSR):
            root = Path(tempfile.gettempdir()) / f"fashion_mnist_{hashlib.sha1(str(raw.resolve()).encode()).hexdigest()[:12]}"
        target = root / "FashionMNIST" / "raw"
        target.mkdir(parents=True, exist_ok=True)
        for name in [name for name in FILES if not (target / name).is_file()]:
            source, partial = raw / name if (raw / name).is_file() else raw / f"{name}.gz", target / f"{name}.partial"
            try:
                with (gzip.open if source.suffix == ".gz" else open)(source, "rb") as packed, open(partial, "wb") as out:
                    shutil.copyfileobj(packed, out)
            except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
                partial.unlink(missing_ok=True)
                raise DatasetError(f"{source} could not be decompressed ({error}); the file is corrupted.") from None
            partial.replace(target / name)  # atomic: a killed extraction leaves no half file
    elif missing and download:
        try:
            FashionMNIST(str(data_dir), train=True, download=True)
            FashionMNIST(str(data_dir), train=False, download=True)
        except Exception as error:  # offline: URLError, timeouts, ...
            raise DatasetError(f"{absent} (download failed: {error})") from None
    elif missing:
        raise DatasetError(absent)
    for split in ("train", "t10k"):
        images, labels = (root / "FashionMNIST" / "raw" / f"{split}-{kind}" for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))
        if check_idx(images, *FILES[images.name]) != check_idx(labels, *FILES[labels.name]):
            raise DatasetError(f"{images} and {labels} disagree on the number of items.")
    return root


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (60 000 train / 10 000 test, 28x28 grey, 10 classes) from torchvision.

    Args:
        data_dir: folder holding ``FashionMNIST/raw/`` (default ``data/``, git-ignored).
        batch_size: images per batch (text 004: 64).
        val_size: images taken from the training set for validation, by a seeded split. ``0``
            trains on all 60 000 (the source recipe); validation then runs on the training images.
        input_path: ``tensor``: the whole set as one uint8 tensor on the training device,
            normalised batches built by indexing (fast); ``torchvision``: the dataset's own
            transforms with a DataLoader (text 004's path; pinned memory on CUDA).
        normalize: subtract 0.2860 and divide by 0.3530 (the dataset's statistics); without it,
            pixels are in [0, 1] as ``ToTensor`` gives them (the source recipe).
        augment, crop_padding: see ``ImageDataModule``.
        augment_from_epoch: see ``ImageDataModule``; ``tensor`` input path only. Clean images are
            learnt faster, augmented ones generalise better, so a run may start on clean ones.
        num_workers: DataLoader workers of the ``torchvision`` path.
        download: try torchvision's download when the files are missing (needs internet).
        seed, predict_split: see ``TensorDataModule``.

    Example: ``FashionMNISTDataModule(data_dir="../shared/data", augment=True)``.
    """

    path_arguments = ("data_dir",)  # relative: to the config file that names it (lightning_models.training.data_paths)

    class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    image_shape = (1, 28, 28)
    why_no_folds = "its train/test split is fixed by the dataset, and its 60 000 training images need no folds to validate on."

    def __init__(self, data_dir: str = "data", batch_size: int = 64, val_size: int = 5000,
                 input_path: Literal["tensor", "torchvision"] = "tensor", normalize: bool = True, augment: bool = False,
                 crop_padding: int = 2, augment_from_epoch: int = 0, num_workers: int = 2, download: bool = True,
                 seed: int = 0, predict_split: Split = "test") -> None:
        super().__init__(batch_size, augment, crop_padding, augment_from_epoch, seed, predict_split)
        check_choice("input_path", input_path, ("tensor", "torchvision"))
        if not 0 <= val_size < 60_000:
            raise ConfigError(f"val_size={val_size!r} is invalid; expected 0 <= val_size < 60000.")
        if augment and augment_from_epoch and input_path == "torchvision":
            raise ConfigError(f"augment_from_epoch={augment_from_epoch} works on the tensor input path only; "
                              "use input_path=tensor, or augment_from_epoch=0 with input_path=torchvision.")
        self.data_dir, self.val_size, self.input_path, self.normalize = Path(data_dir), val_size, input_path, normalize
        self.num_workers, self.download = num_workers, download
        self.root: Path | None = None

    def prepare_data(self) -> None:
        self.root = prepare_raw_files(self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.root is None:  # prepare_data runs on one process per node; other ranks land here
            self.root = prepare_raw_files(self.data_dir, download=False)
        train, test = (FashionMNIST(str(self.root), train=is_train) for is_train in (True, False))
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
        train_rows = order[self.val_size :].sort().values
        self.split_indices = {"train": train_rows, "val": order[: self.val_size].sort().values if self.val_size else train_rows}
        self.splits = {split: (train.data[rows], train.targets[rows]) for split, rows in self.split_indices.items()}
        self.splits["test"] = (test.data, test.targets)

    def to_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 28, 28) -> float (N, 1, 28, 28), normalised as configured."""
        images = images.unsqueeze(1).float().div_(255)
        return images.sub_(MEAN).div_(STD) if self.normalize else images

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        return images * STD + MEAN if self.normalize else images

    def input_columns(self, split: str) -> tuple[list[str], list[list[str]]]:
        """Each image's index in torchvision's FashionMNIST (its ``train=`` set: ``test`` for the test split)."""
        rows = range(len(self.splits["test"][1])) if split == "test" else self.split_indices[split].tolist()
        return ["image"], [[f"{'test' if split == 'test' else 'train'}[{row}]"] for row in rows]

    def normalization(self) -> tuple[list[float], list[float]]:
        return ([MEAN], [STD]) if self.normalize else ([0.0], [1.0])

    def torchvision_dataset(self, split: str) -> Dataset:
        flips = [transforms.RandomHorizontalFlip()] if self.augment and split == "train" else []
        crops = [transforms.RandomCrop(28, padding=self.crop_padding)] if flips and self.crop_padding else []
        scaling = [transforms.Normalize((MEAN,), (STD,))] if self.normalize else []
        dataset = FashionMNIST(str(self.root), train=split != "test", transform=transforms.Compose(
            [*flips, *crops, transforms.ToTensor(), *scaling]))
        return dataset if split == "test" else Subset(dataset, self.split_indices[split].tolist())

    def batches(self, split: str, shuffle: bool) -> ImageBatches | DataLoader:
        if self.input_path == "torchvision":  # text 004's path: workers decode and transform each image
            return DataLoader(self.torchvision_dataset(split), batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0, pin_memory=self.device.type == "cuda",  # async copies
                              generator=torch.Generator().manual_seed(order_seed(self)))
        return self.image_batches(split, shuffle)
