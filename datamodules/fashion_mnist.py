"""Fashion-MNIST on torchvision's dataset class, with a fast in-memory input path."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import stat
import struct
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, Subset
from torchvision import transforms
from torchvision.datasets import FashionMNIST

from datamodules.images import ImageDataModule
from datamodules.tensor import Split
from lightning_models.checks import RELATIVE, ConfigError, check_choice

FILES = {"train-images-idx3-ubyte": (2051, (28, 28)), "train-labels-idx1-ubyte": (2049, ()),  # (IDX magic, item shape)
         "t10k-images-idx3-ubyte": (2051, (28, 28)), "t10k-labels-idx1-ubyte": (2049, ())}
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's own statistics (training set)


class DatasetError(ConfigError):
    """Fashion-MNIST files are missing, truncated or corrupted."""


def check_idx(path: Path) -> int:
    """The item count of an IDX file whose header agrees with its name and size."""
    magic, shape = FILES[path.name]
    size = 4 * (2 + len(shape))
    with open(path, "rb") as handle:
        header = handle.read(size)
    found = struct.unpack(f">{2 + len(shape)}I", header) if len(header) == size else ()
    if found[:1] + found[2:] != (magic, *shape) or path.stat().st_size != size + found[1] * math.prod(shape):
        raise DatasetError(f"{path} is truncated or not a Fashion-MNIST IDX file: header {found}, {path.stat().st_size} "
                           f"bytes; expected magic {magic} and items of shape {shape}.")
    return found[1]


def prepare_raw_files(data_dir: Path, download: bool) -> Path:
    """A root whose ``FashionMNIST/raw/`` holds the four checked files: found, extracted (elsewhere if read-only) or downloaded."""
    raw, root = data_dir / "FashionMNIST" / "raw", data_dir
    missing = [name for name in FILES if not (raw / name).is_file()]
    absent = (f"Fashion-MNIST not found in {raw.absolute()}: it needs the four files {', '.join(FILES)} (or the same names with .gz). "
              "Download them (download=True does it online) or point --data.data_dir at the folder holding "
              f"FashionMNIST/raw/ (on this project's machines: --data.data_dir ../shared/data; {RELATIVE}).")
    if missing and all((raw / f"{name}.gz").is_file() for name in missing):
        # read-only even for root without the owner's write bit
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
            for train in (True, False):
                FashionMNIST(str(data_dir), train=train, download=True)
        except Exception as error:  # offline
            raise DatasetError(f"{absent} (download failed: {error})") from None
    elif missing:
        raise DatasetError(absent)
    for split in ("train", "t10k"):
        images, labels = (root / "FashionMNIST" / "raw" / f"{split}-{kind}-idx{n}-ubyte" for kind, n in (("images", 3), ("labels", 1)))
        if check_idx(images) != check_idx(labels):
            raise DatasetError(f"{images} and {labels} disagree on the number of items.")
    return root


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (60 000 train / 10 000 test 28x28 images, 10 classes); ``input_path=torchvision``: text 004's path."""

    path_arguments = ("data_dir",)
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
            raise ConfigError(f"augment_from_epoch={augment_from_epoch} works on input_path=tensor only.")
        self.data_dir, self.val_size, self.input_path, self.normalize = Path(data_dir), val_size, input_path, normalize
        self.num_workers, self.download, self.root, self.streaming = num_workers, download, None, input_path == "torchvision"

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
        images = images.unsqueeze(1).float().div_(255)
        return images.sub_(MEAN).div_(STD) if self.normalize else images

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        return images * STD + MEAN if self.normalize else images

    def normalization(self) -> tuple[list[float], list[float]]:
        return ([MEAN], [STD]) if self.normalize else ([0.0], [1.0])

    def input_columns(self, split: str) -> tuple[list[str], list[list[str]]]:
        """Each image's index in torchvision's FashionMNIST."""
        rows = range(len(self.splits["test"][1])) if split == "test" else self.split_indices[split].tolist()
        return ["image"], [[f"{'test' if split == 'test' else 'train'}[{row}]"] for row in rows]

    def stream(self, split: str) -> tuple[Dataset, dict[str, Any]]:
        flips = [transforms.RandomHorizontalFlip()] if self.augment and split == "train" else []
        crops = [transforms.RandomCrop(28, padding=self.crop_padding)] if flips and self.crop_padding else []
        scaling = [transforms.Normalize((MEAN,), (STD,))] if self.normalize else []
        dataset = FashionMNIST(str(self.root), train=split != "test",
                               transform=transforms.Compose([*flips, *crops, transforms.ToTensor(), *scaling]))
        return dataset if split == "test" else Subset(dataset, self.split_indices[split].tolist()), {
            "persistent_workers": self.num_workers > 0}
