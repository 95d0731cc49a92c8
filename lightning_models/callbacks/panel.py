"""Base of the TensorBoard panel callbacks: collect a stage's predictions, draw once at its end."""

from __future__ import annotations

from typing import Any

import matplotlib
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn

matplotlib.use("Agg")  # off-screen (torchmetrics' plot() goes through pyplot), also with a display


def tensorboard_writer(trainer: pl.Trainer) -> Any | None:
    """The TensorBoard logger's SummaryWriter on rank zero; None elsewhere or, with one warning, without one."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    rank_zero_warn("Panel callbacks draw to TensorBoard only; no TensorBoardLogger is configured.")
    return None


def class_names(trainer: pl.Trainer, count: int) -> list[str]:
    """The datamodule's ``class_names`` when it has ``count`` of them, else ``"0"``, ``"1"``, ..."""
    names = getattr(trainer.datamodule, "class_names", None)
    return list(names) if names is not None and len(names) == count else [str(index) for index in range(count)]


class PredictionPanel(pl.Callback):
    """Collects the ``predictions`` and ``targets`` that ``validation_step``/``test_step`` return and logs the figure
    of ``draw`` (subclasses) as ``<stage>/<tag>`` at the stage's end; skips the sanity check and ranks other than 0.

    Args:
        every_n_epochs: during fit, draw after every n-th epoch's validation (test and validate always draw).
        max_rows: keep at most this many rows, so memory stays bounded.
    """

    tag = "panel"
    paused = False  # set by run() while it re-validates the best checkpoint: the panels drew during fit

    def __init__(self, every_n_epochs: int = 1, max_rows: int = 20_000) -> None:
        self.every_n_epochs, self.max_rows = every_n_epochs, max_rows
        self.rows: list[dict[str, torch.Tensor]] = []

    def active(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking or not trainer.is_global_zero or self.paused:
            return False
        return trainer.state.fn != "fit" or (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def collect(self, batch: Any, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What to keep of one batch; subclasses may add the inputs."""
        return {"predictions": outputs["predictions"], "targets": outputs["targets"]}

    def draw(self, trainer: pl.Trainer, module: pl.LightningModule, rows: dict[str, torch.Tensor]) -> Figure:
        raise NotImplementedError

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = []

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.active(trainer) and isinstance(outputs, dict) and sum(len(p["targets"]) for p in self.rows) < self.max_rows:
            self.rows.append({key: (value.float() if value.is_floating_point() else value).detach().cpu()
                              for key, value in self.collect(batch, outputs).items()})

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active(trainer) or not self.rows or (writer := tensorboard_writer(trainer)) is None:
            return
        figure = self.draw(trainer, pl_module, {key: torch.cat([part[key] for part in self.rows]) for key in self.rows[0]})
        writer.add_figure(f"{'test' if trainer.testing else 'val'}/{self.tag}", figure, global_step=trainer.global_step,
                          close=True)
        writer.flush()
        self.rows = []

    # The validation hooks serve the test stage too (trainer.testing tells them apart)
    on_test_epoch_start = on_validation_epoch_start
    on_test_batch_end = on_validation_batch_end
    on_test_epoch_end = on_validation_epoch_end
