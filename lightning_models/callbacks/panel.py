"""Base of the TensorBoard panel callbacks: collect a stage's predictions, draw once at its end."""

from __future__ import annotations

from typing import Any

import matplotlib
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn

matplotlib.use("Agg")  # panels are drawn off-screen (torchmetrics' plot() goes through pyplot), also with a display


def tensorboard_writer(trainer: pl.Trainer) -> Any | None:
    """The SummaryWriter of the trainer's TensorBoard logger on rank zero; None elsewhere, or (with one warning)
    when there is no TensorBoard logger."""
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
    """Collects the ``predictions`` and ``targets`` that ``validation_step``/``test_step`` return
    and, at the end of the stage, logs the figure ``draw`` makes as ``<stage>/<tag>``.

    Args:
        every_n_epochs: during fit, draw after the validation of every n-th epoch (test runs and
            stand-alone ``validate`` always draw).
        max_rows: keep at most this many rows, so memory stays bounded on large datasets.

    Skips the sanity check and non-zero ranks. Subclasses implement ``draw``.
    """

    tag = "panel"
    paused = False  # set by run() while it re-validates the best checkpoint: the panels drew during fit

    def __init__(self, every_n_epochs: int = 1, max_rows: int = 20_000) -> None:
        self.every_n_epochs = every_n_epochs
        self.max_rows = max_rows
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
        if not self.active(trainer) or not isinstance(outputs, dict):
            return
        if sum(len(part["targets"]) for part in self.rows) >= self.max_rows:
            return
        self.rows.append({key: value.detach().float().cpu() if value.is_floating_point() else value.detach().cpu()
                          for key, value in self.collect(batch, outputs).items()})

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active(trainer) or not self.rows:
            return
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        rows = {key: torch.cat([part[key] for part in self.rows]) for key in self.rows[0]}
        figure = self.draw(trainer, pl_module, rows)
        stage = "test" if trainer.testing else "val"
        writer.add_figure(f"{stage}/{self.tag}", figure, global_step=trainer.global_step, close=True)
        writer.flush()
        self.rows = []

    # The validation hooks serve the test stage too (trainer.testing tells them apart).
    on_test_epoch_start = on_validation_epoch_start
    on_test_batch_end = on_validation_batch_end
    on_test_epoch_end = on_validation_epoch_end
