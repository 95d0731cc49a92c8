"""Training concerns shared by every task module: optimizer, schedule, the update loop, logging."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.strategies import SingleDeviceStrategy
from torchmetrics import MetricCollection

from lightning_models.checks import ConfigError, check_choice, check_positive

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = (None, "cosine", "onecycle")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class TaskModule(pl.LightningModule):
    """Base of the task modules: subclasses build a net and metrics and define ``model_step``.

    Args:
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr: learning rate (> 0). weight_decay, momentum: passed to the optimizer (momentum: SGD only).
        scheduler: ``None``, ``cosine`` (to zero over the run) or ``onecycle``; stepped every update.
        updates_per_step: optimizer updates per Lightning training step on the same batch. For tiny
            in-memory problems (iris, full batch) Lightning's fixed cost per step dwarfs the
            update itself; ``updates_per_step=100`` runs 100 plain updates per step. ``max_steps``
            and ``global_step`` still count optimizer updates; an epoch then holds
            ``batches * updates_per_step`` updates, and train metrics come from the last update
            of each step. On one device in 32-bit precision, all but the last update of a step are
            plain ``loss.backward(); optimizer.step()``: the per-update hooks
            (``on_before_backward``, ``on_after_backward``, ``on_before_optimizer_step``, a
            ``backward`` override) then run once per step, for its last update. Elsewhere (DDP,
            mixed precision) every update goes through Lightning.

    Optimization is manual (``automatic_optimization = False``) so that one loop serves both cases.
    """

    monitor: str = "val/loss"

    def __init__(
        self,
        optimizer: Literal["sgd", "adam", "adamw"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        scheduler: Literal["cosine", "onecycle"] | None = None,
        updates_per_step: int = 1,
    ) -> None:
        super().__init__()
        check_choice("optimizer", optimizer, OPTIMIZERS)
        check_choice("scheduler", scheduler, SCHEDULERS)
        check_positive("lr", lr)
        check_positive("updates_per_step", updates_per_step, integer=True)
        if weight_decay < 0 or momentum < 0:
            raise ConfigError(f"weight_decay={weight_decay!r}, momentum={momentum!r}: both must be >= 0.")
        self.automatic_optimization = False
        # Called here, it also records the arguments of the subclass whose __init__ called us.
        self.save_hyperparameters()

    def init_metrics(self, metrics: MetricCollection) -> None:
        """One torchmetrics collection per stage, so epoch reduction never mixes stages."""
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(loss, predictions, targets)`` for a batch; predictions as the metrics want them."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        last = self.hparams.updates_per_step - 1
        plain = last > 0 and self._plain_updates_allowed()
        for update in range(last + 1):
            loss, predictions, targets = self.model_step(batch)
            optimizer.zero_grad(set_to_none=True)
            if plain and update < last:
                # Lightning's per-update hooks cost more than a tiny full-batch update itself.
                loss.backward()
                optimizer._on_before_step()  # keeps global_step counting updates
                optimizer.optimizer.step()
                optimizer._on_after_step()
            else:
                self.manual_backward(loss)
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
        self._check_finite(loss, batch_idx)
        self._log_stage("train", loss, predictions, targets)
        return loss

    def _plain_updates_allowed(self) -> bool:
        """Updates may bypass Lightning: one device, no loss scaling or casting by a precision plugin."""
        strategy = self.trainer.strategy
        return type(strategy) is SingleDeviceStrategy and type(strategy.precision_plugin) is Precision

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(inputs)

    def _evaluate(self, stage: str, batch: Any) -> dict[str, torch.Tensor]:
        loss, predictions, targets = self.model_step(batch)
        self._log_stage(stage, loss, predictions, targets)
        # Returned so that panel callbacks can draw without running the model again.
        return {"loss": loss, "predictions": predictions.detach(), "targets": targets}

    def _log_stage(self, stage: str, loss: torch.Tensor, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        metrics.update(predictions.detach(), targets)
        batch_size = len(targets)
        # sync_dist: under DDP the epoch loss is averaged over ranks (once per epoch, not per step).
        self.log(f"{stage}/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=batch_size)

    def _check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        # On an accelerator the check is a host sync: do it every 50 steps there, every step on CPU.
        if loss.device.type != "cpu" and batch_idx % 50:
            return
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}). The usual cause is a learning rate "
                f"that is too high for this model (lr={self.hparams.lr}); try a smaller --model.init_args.lr, "
                "feature standardisation, or gradient clipping."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets scripts load a checkpoint without being told its class (lightning_models.checkpoints).
        checkpoint["module_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        # The global RNG (dropout, weight init of later layers): a resumed run draws what an
        # uninterrupted one would. Batch order and augmentation are a function of (seed, epoch).
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states and self._trainer is not None and self.trainer.state.fn == "fit":  # resuming training
            torch.set_rng_state(states["torch"])
            if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states["cuda"])

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        options: dict[str, float] = {"lr": hp.lr, "weight_decay": hp.weight_decay}
        if hp.optimizer == "sgd":
            options["momentum"] = hp.momentum
        optimizer = OPTIMIZERS[hp.optimizer](self.parameters(), **options)
        if hp.scheduler is None:
            return optimizer
        total_updates = int(self.trainer.estimated_stepping_batches)
        if self.trainer.max_steps == -1:  # counted in batches: each runs updates_per_step updates
            total_updates *= hp.updates_per_step
        if hp.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_updates)
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=total_updates)
        # Stepped by hand in training_step (manual optimization); "step" tells LearningRateMonitor.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
