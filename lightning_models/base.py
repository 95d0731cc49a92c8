"""TaskModule: the injected net and optimizer, per-stage torchmetrics logged once an epoch, full-batch repetition."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from lightning_models.checks import ConfigError, check_positive

NetFactory = Callable[[int, int], nn.Module]  # net(num_features, num_outputs), e.g. lightning_models.nets.MLP
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class CosineToZero(torch.optim.lr_scheduler.CosineAnnealingLR):
    """Cosine annealing to ``eta_min`` over ``total_steps`` steps (``TaskModule`` fills in the run's length)."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None, eta_min: float = 0.0) -> None:
        if total_steps is None:
            raise ConfigError("CosineToZero needs total_steps (TaskModule fills it in from the trainer).")
        super().__init__(optimizer, T_max=total_steps, eta_min=eta_min)


class TaskModule(pl.LightningModule):
    """Base of the task modules: ``self.net = net(num_features, num_outputs)`` (sizes linked from the datamodule), the
    optimizer (default Adam) and ``scheduler`` (stepped every training step; ``total_steps`` of ``OneCycleLR`` and
    ``CosineToZero`` filled in), torchmetrics per stage; subclasses call ``init_metrics`` and define ``model_step``.

    ``updates_per_step``: optimizer updates per training step on its batch (full-batch data, where Lightning's cost per
    step dwarfs an update); ``global_step`` counts steps, ``train/updates`` updates. ``compile``: ``torch.compile`` the
    net in place (the checkpoint's keys stay ``net.*``; needs a C compiler).
    """

    last_update = True  # whether training_step runs the step's last update, the one whose metrics it logs

    def __init__(
        self,
        num_features: int,
        num_outputs: int,
        net: NetFactory,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        updates_per_step: int = 1,
        compile: bool = False,
    ) -> None:
        super().__init__()
        check_positive("updates_per_step", updates_per_step, integer=True)
        # LightningCLI hands a class over as a partial holding it: name the class
        named = next((part for part in getattr(net, "args", ()) if isinstance(part, type)), net)
        name = f"{named.__module__}.{named.__qualname__}" if isinstance(named, type) else repr(named)
        try:
            self.net = net(num_features, num_outputs)
        except TypeError as error:
            raise ConfigError(f"net {name} cannot be called as net(num_features, num_outputs): {error}") from None
        if not any(parameter.requires_grad for parameter in self.net.parameters()):
            raise ConfigError(f"net {name} has no parameters to train; expected an nn.Module with weights, e.g. "
                              "lightning_models.nets.MLP")
        if compile:
            if not any(map(shutil.which, ("cc", "gcc", "clang"))):  # inductor would fail at the first step, at length
                raise ConfigError("compile=True: torch.compile needs a C compiler (cc, gcc or clang) on PATH and none is "
                                  "there; install one or leave compile false")
            self.net.compile()
        try:  # torch checks lr, betas, weight_decay... when the optimizer is built: do it now, not mid-run
            optimizer([nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError) as error:
            raise ConfigError(f"optimizer: {error}") from None
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        # Records the calling subclass's arguments too; run() gives the loggers readable names
        self.save_hyperparameters(logger=False)

    def init_metrics(self, metrics: MetricCollection) -> None:
        """One metric collection and one loss mean per stage, so epoch reduction never mixes stages."""
        self.train_metrics, self.val_metrics, self.test_metrics = (metrics.clone(prefix=f"{s}/") for s in ("train", "val", "test"))
        # nan_strategy "disable" (a NaN check syncs the host every step on a GPU) ignores weights: each batch's loss
        # enters once per row (update_metrics), a batch-size-weighted mean
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric(nan_strategy="disable") for _ in range(3))

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, predictions, targets)`` of a batch, predictions as the metrics want them."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, predictions, targets = self.model_step(batch)
        if self.last_update:  # once a step: a NaN of an earlier update of the batch reaches the last one
            self.check_finite(loss, batch_idx)
            self.update_metrics("train", loss, predictions, targets)
        return loss

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        # Each update through Lightning's closure (training_step, zero_grad, backward, clipping, precision, DDP sync);
        # Lightning counts one step and steps the scheduler once
        for update in range(self.hparams.updates_per_step):
            self.last_update = update == self.hparams.updates_per_step - 1
            optimizer.step(closure=optimizer_closure)

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self.evaluate("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self.evaluate("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def evaluate(self, stage: str, batch: Any) -> dict[str, torch.Tensor]:
        loss, predictions, targets = self.model_step(batch)
        self.update_metrics(stage, loss, predictions, targets)
        # Returned so that panel callbacks can draw without running the model again
        return {"loss": loss, "predictions": predictions.detach(), "targets": targets}

    def update_metrics(self, stage: str, loss: torch.Tensor, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        getattr(self, f"{stage}_metrics").update(predictions.detach(), targets)
        getattr(self, f"{stage}_loss").update(loss.detach().expand(len(targets)))

    def on_train_epoch_end(self) -> None:
        if self.hparams.updates_per_step > 1:
            self.log("train/updates", float(self.global_step * self.hparams.updates_per_step), sync_dist=True)
        self.log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch("test")

    def log_epoch(self, stage: str) -> None:
        """Log the stage's epoch loss and metrics (reduced over ranks by torchmetrics) and reset them."""
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        loss: MeanMetric = getattr(self, f"{stage}_loss")
        if loss.update_count:
            # sync_dist all-reduces values already equal on every rank; without it Lightning warns under DDP
            self.log(f"{stage}/loss", loss.compute(), prog_bar=True, sync_dist=True)
            self.log_dict({**metrics.compute(), **self.step_axis()}, sync_dist=True)
        loss.reset()
        metrics.reset()

    def step_axis(self) -> dict[str, float]:
        """x = ``global_step`` for the epoch's points, where the panels draw (Lightning's own is one less during fit);
        with ``step`` Lightning logs no ``epoch``: logged during fit only (after it, one past the last)."""
        if not self.global_step:
            return {}
        fitting = self.trainer.state.fn == "fit"
        return {"step": float(self.global_step), **({"epoch": float(self.current_epoch)} if fitting else {})}

    def check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        if loss.device.type != "cpu" and batch_idx % 50:  # a host sync on an accelerator: every 50 steps there
            return
        if not torch.isfinite(loss):
            lr = self.optimizers().param_groups[0]["lr"]
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}). The usual cause is a learning rate "
                f"that is too high for this model (lr={lr:g}); try a smaller "
                "--model.init_args.optimizer.init_args.lr, feature standardisation, or gradient clipping."
            )

    def on_train_start(self) -> None:
        if self.trainer.overfit_batches:  # can the model fit these batches? dropout would only hide the answer
            for module in self.modules():
                if isinstance(module, DROPOUTS):
                    module.eval()  # Lightning keeps a module's mode across validation

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets scripts load a checkpoint without being told its class (lightning_models.training.checkpoints)
        checkpoint["module_class"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        fill_in = getattr(self.make_scheduler, "keywords", {}).get("total_steps", 0) is None  # left out in the config
        steps = {"total_steps": int(self.trainer.estimated_stepping_batches)} if fill_in else {}
        scheduler = self.make_scheduler(optimizer, **steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
