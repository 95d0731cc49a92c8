"""Callbacks the tests inject into real runs from the command line (``--trainer.callbacks+=...``)."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl


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
