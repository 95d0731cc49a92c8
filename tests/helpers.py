"""Shared test helpers: callbacks the tests inject into real runs (``--trainer.callbacks+=...``), tiny data
writers, a free port, the tags of a run's event files."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


class KillAtBatch(pl.Callback):
    """SIGKILLs its own process when batch ``batch`` of epoch ``epoch`` is about to train: a hard crash
    at a chosen point (the ``last.ckpt`` of the epoch before it exists), with no timing involved.
    With ``once``, a file path, only the first run to get there dies (it creates the file first); with
    ``log_dir_contains``, only a run whose log folder contains that text (one trial of a sweep)."""

    def __init__(self, epoch: int, batch: int = 0, once: str | None = None, log_dir_contains: str = "") -> None:
        self.epoch, self.batch, self.once, self.log_dir_contains = epoch, batch, once, log_dir_contains

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch) and self.log_dir_contains in str(trainer.log_dir):
            if self.once is not None:
                if os.path.exists(self.once):
                    return
                open(self.once, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


class StallCheckpointWrite(pl.Callback):
    """From epoch ``epoch`` on, the next checkpoint file written (through fsspec, as Lightning's
    ``TorchCheckpointIO`` writes) stops after half its bytes: the partial file is flushed to disk, its
    path written to ``marker``, and the process waits there to be killed. A kill in the middle of a
    checkpoint write, with no timing involved."""

    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch, self.marker = epoch, marker

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            return
        import time

        from fsspec.implementations.local import LocalFileOpener

        marker = self.marker

        def write(opener: LocalFileOpener, data: bytes) -> int:
            half = len(data) // 2
            opener.f.write(data[:half])
            opener.f.flush()
            os.fsync(opener.f.fileno())
            with open(marker + ".partial", "w") as handle:
                handle.write(f"{opener.temp or opener.path}\n{half}\n")
            os.replace(marker + ".partial", marker)
            time.sleep(600)
            return len(data)

        LocalFileOpener.write = write


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picks it), for a server or a process group a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Tiny data sets the tests write: Fashion-MNIST IDX files, CSV tables, folders of PNGs.
# (Imports inside: the runs that load the callbacks above do not need them.)


def write_idx(folder: Path, train: int = 96, test: int = 32, gz: bool = False, seed: int = 0) -> Path:
    """Tiny Fashion-MNIST-format files under ``folder/FashionMNIST/raw``: image i's first pixel holds
    i % 256; labels i % 10. Returns ``folder`` (the datamodule's ``data_dir``)."""
    import gzip
    import struct

    import torch

    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        images = torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)
        images[:, 0, 0] = torch.arange(count, dtype=torch.uint8)
        labels = (torch.arange(count) % 10).to(torch.uint8)
        blobs = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, count, 28, 28) + images.numpy().tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, count) + labels.numpy().tobytes(),
        }
        for name, blob in blobs.items():
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (raw / name).write_bytes(blob)
    return folder


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    import csv

    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def wine_csv(path: Path) -> Path:
    """scikit-learn's wine data (178 rows, 13 numeric columns) as a CSV file, the class names in column ``class``."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    return write_csv(path, [*wine.feature_names, "class"],
                     [[*row, wine.target_names[label]] for row, label in zip(wine.data.tolist(), wine.target)])


IMAGE_CLASSES = ["bar", "column", "cross"]  # the class folders write_folder writes


def write_folder(root: Path, per_class: int = 40, colour: bool = False, seed: int = 0) -> Path:
    """``root/<class>/NNN.png`` for each of IMAGE_CLASSES: noisy 28x28 pictures of a horizontal bar, a
    vertical bar or a cross, somewhere in the image (grey, or three channels: the grey, half of it and
    its inverse). Returns ``root``."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(seed)
    for name in IMAGE_CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            image = generator.integers(0, 60, (28, 28)).astype(np.uint8)
            row, column = generator.integers(6, 28 - 6, 2)
            if name in ("bar", "cross"):
                image[row - 2: row + 2, 3:-3] = 230
            if name in ("column", "cross"):
                image[3:-3, column - 2: column + 2] = 230
            pixels = np.stack([image, image // 2, 255 - image], -1) if colour else image
            Image.fromarray(pixels).save(root / name / f"{index:03d}.png")
    return root


def event_tags(run_dir: Path) -> dict[str, set[str]]:
    tags: dict[str, set[str]] = {"scalars": set(), "images": set()}
    for path in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0})
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    return tags


def run_script(path: Path, *args: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """``python PATH ARGS`` run in this process (``runpy``, as ``__main__``; ``extra_path`` on ``sys.path``): its exit
    code and output, without a fresh interpreter's seconds of imports."""
    out, err, here, argv, code = io.StringIO(), io.StringIO(), os.getcwd(), sys.argv, 0
    added = [str(extra_path)] if extra_path is not None else []
    os.chdir(cwd)
    sys.argv, sys.path[:0] = [str(path), *args], added
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else 0 if exited.code is None else 1
        err.write("" if isinstance(exited.code, int) or exited.code is None else f"{exited.code}\n")
    finally:
        os.chdir(here)
        sys.argv = argv
        del sys.path[: len(added)]
    return subprocess.CompletedProcess([str(path), *args], code, out.getvalue(), err.getvalue())


# A sweep space over iris_mlp_classifier.yaml for the sweep tests: three parameters, small ranges.
IRIS = str(Path(__file__).resolve().parents[1] / "configs" / "iris_mlp_classifier.yaml")
LR = "model.init_args.optimizer.init_args.lr"
HIDDEN = "model.init_args.net.init_args.hidden_sizes"
SPACE = {"parameters": {LR: {"type": "float", "low": 0.005, "high": 0.05, "log": True},
                        HIDDEN: {"type": "categorical", "choices": [[8], [16]]},
                        "model.init_args.net.init_args.activation": {"type": "categorical", "choices": ["relu", "tanh"]}}}


def write_space(folder: Path, space: dict = SPACE) -> str:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)


def pg_binary(name: str) -> str | None:
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)


PASSWORD = "s3cret-Pa55word"  # the throwaway server's; a test looks for it in every file a sweep writes


def assert_cross_validation(fold_rows: list[tuple[list, list]], rest: list, label_of: dict, folds: int) -> None:
    """``fold_rows[k]``: the identities of fold k's training and validation rows; ``rest``: those of the rows
    that are not test rows (unique); ``label_of``: identity -> class."""
    assert len(fold_rows) == folds and len(set(rest)) == len(rest)
    assert sorted(row for _, val in fold_rows for row in val) == sorted(rest)  # disjoint folds, each row once
    shares = Counter(label_of[row] for row in rest)
    for train, val in fold_rows:
        assert sorted(train) == sorted(set(rest) - set(val))
        counts = Counter(label_of[row] for row in val)
        assert all(abs(counts[label] - count / folds) <= 1 for label, count in shares.items()), (counts, shares)


# Four batches a step apart per epoch, and an lr so high that the validation loss does not fall all the way: the best
# checkpoint is an earlier epoch's than the last.
CLIMBING_OPTIONS = ["--trainer.max_epochs=3", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                    "--trainer.precision=32-true", "--model.init_args.updates_per_step=1", "--data.init_args.batch_size=16",
                    "--model.init_args.optimizer.init_args.lr=1.0"]


class FitValidations(pl.Callback):
    """What each validation during fit measured, with the global step and epoch it ran at."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.seen.append((trainer.global_step, trainer.current_epoch, float(trainer.callback_metrics["val/loss"])))
