"""Several optimizer updates per Lightning step, on the step's batch: the speed device for tiny full-batch problems
(iris, the synthetic planes), where Lightning's fixed cost per step dwarfs the update (docs/speed.md)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class RepeatedUpdates(pl.LightningModule):
    """``updates_per_step`` updates per training step; a subclass sets ``self.hparams.updates_per_step`` (through
    ``save_hyperparameters``) and provides ``model_step(batch) -> (loss, ...)``.

    ``global_step`` and ``max_steps`` count Lightning steps, ``train/updates`` the updates; train metrics come from the
    last update of each step (``last_update``); a schedule that spans the run gets ``updates_per_step`` times the
    trainer's estimate (``total_updates``). The extra updates bypass Lightning where that changes nothing (one process,
    32 or 64-bit, no clipping) and go through its closure otherwise.
    """

    last_update = True  # the update whose metrics training_step logs

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.batch = batch  # for the plain updates of optimizer_step

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """The extra updates first, the last (or every one, where Lightning must see it) through Lightning's closure,
        which runs ``training_step``, backward and gradient clipping."""
        extra = self.hparams.updates_per_step - 1
        plain = extra > 0 and self.plain_updates_allowed()
        scheduler = self.lr_schedulers() if extra else None
        for update in range(extra + 1):
            self.last_update = update == extra
            if plain and not self.last_update:
                optimizer.zero_grad(set_to_none=True)
                self.model_step(self.batch)[0].backward()
                optimizer.optimizer.step()
            else:
                optimizer.step(closure=optimizer_closure)
            if scheduler is not None and not self.last_update:  # Lightning steps it after the last update
                scheduler.step()

    def plain_updates_allowed(self) -> bool:
        """Backward may bypass Lightning: one process, no clipping, casting or loss scaling by Lightning."""
        return (self.trainer.world_size == 1 and self.trainer.precision in ("32-true", "64-true")
                and not self.trainer.gradient_clip_val)

    def log_updates(self) -> None:
        if self.hparams.updates_per_step > 1:  # global_step counts Lightning steps
            self.log("train/updates", float(self.global_step * self.hparams.updates_per_step), sync_dist=True)

    def total_updates(self) -> int:
        """The optimizer updates the trainer will run (estimated_stepping_batches counts Lightning steps)."""
        return int(self.trainer.estimated_stepping_batches) * self.hparams.updates_per_step
