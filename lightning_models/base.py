"""Training concerns shared by every task module: the injected net and optimizer, the update loop, logging."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from lightning_models.checks import ConfigError, check_positive
from lightning_models.repeated_updates import RepeatedUpdates

FLUSH_EVERY = 32  # batches gathered before a count metric's update
NetFactory = Callable[[int, int], nn.Module]  # net(num_features, num_outputs), e.g. lightning_models.nets.MLP


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class CosineToZero(torch.optim.lr_scheduler.CosineAnnealingLR):
    """Cosine annealing from the optimizer's learning rate to ``eta_min`` over ``total_steps`` updates,
    which ``TaskModule`` sets to the run's length when the config leaves it out."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None, eta_min: float = 0.0) -> None:
        if total_steps is None:
            raise ConfigError("CosineToZero needs total_steps (TaskModule fills it in from the trainer).")
        super().__init__(optimizer, T_max=total_steps, eta_min=eta_min)


class TaskModule(RepeatedUpdates):
    """Base of the task modules: builds ``self.net``; subclasses add metrics and define ``model_step``.

    Args:
        num_features, num_outputs: input and output sizes (linked from the datamodule by the CLI).
        net: builds the architecture as ``net(num_features, num_outputs)``: a class of
            ``lightning_models.nets`` or any ``nn.Module`` class with that signature (class_path +
            init_args in a config, the class's own arguments in init_args).
        optimizer: any ``torch.optim`` optimizer, called with the parameters (class_path + init_args
            in a config; default Adam with its defaults).
        scheduler: any ``torch.optim.lr_scheduler`` class, called with the optimizer and stepped after
            every update. Schedules that span the run, ``OneCycleLR`` and ``CosineToZero``, get their
            ``total_steps`` (when the config leaves it out) from ``configure_optimizers``: the number of
            optimizer updates the trainer will run.
        updates_per_step: optimizer updates per Lightning training step, all on the step's batch, for tiny
            in-memory problems where Lightning's fixed cost per step dwarfs the update (iris, full batch).
            ``global_step`` and ``max_steps`` count Lightning steps, ``train/updates`` the updates; train metrics
            come from the last update of each step; ``accumulate_grad_batches`` needs ``updates_per_step=1``.
            How the updates run: ``lightning_models.repeated_updates`` and docs/speed.md.
        compile: compile the net with ``torch.compile`` (``nn.Module.compile``, in place: the checkpoint's keys stay
            ``net.*``). The first steps, and the first call after loading, wait for the compiler; it needs a C
            compiler on PATH.

    Optimization is Lightning's automatic one, so every Trainer flag applies.
    """

    monitor: str = "val/loss"

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
        # LightningCLI hands a class from the config over as a partial holding it: name the class, not the partial
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
        # Called here, it also records the arguments of the subclass whose __init__ called us. The loggers
        # get them under readable names (hparams.readable_hparams, called by run), not Lightning's raw record.
        self.save_hyperparameters(logger=False)

    def init_metrics(self, metrics: MetricCollection) -> None:
        """One torchmetrics collection per stage, so epoch reduction never mixes stages."""
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # The loss as a batch-size-weighted mean: each batch's loss enters once per row (log_stage), since
        # "disable" (no NaN check, which would sync the host every step on a GPU; a NaN stays NaN) makes
        # torchmetrics 1.9 ignore MeanMetric's weights.
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric(nan_strategy="disable") for _ in range(3))
        # Metrics whose states are counts (accuracy, F1...) sum the same over one batch of many rows as over many
        # batches: their updates are gathered and made every FLUSH_EVERY batches, which costs less per step.
        self.counts_only = all(not torch.is_floating_point(state) for metric in metrics.values()
                               for state in metric.metric_state.values() if isinstance(state, torch.Tensor))
        self.pending: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"train": [], "val": [], "test": []}

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(loss, predictions, targets)`` for a batch; predictions as the metrics want them."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, predictions, targets = self.model_step(batch)
        self.check_finite(loss, batch_idx)
        if self.last_update:
            self.log_stage("train", loss, predictions, targets)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_updates()
        self.log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch("test")

    def on_train_start(self) -> None:
        if self.trainer.overfit_batches:  # can the model fit these batches? dropout would only hide the answer
            for module in self.modules():
                if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
                    module.eval()  # Lightning keeps a module's mode across validation

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self.evaluate("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self.evaluate("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(inputs)

    def evaluate(self, stage: str, batch: Any) -> dict[str, torch.Tensor]:
        loss, predictions, targets = self.model_step(batch)
        self.log_stage(stage, loss, predictions, targets)
        # Returned so that panel callbacks can draw without running the model again.
        return {"loss": loss, "predictions": predictions.detach(), "targets": targets}

    def log_stage(self, stage: str, loss: torch.Tensor, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """Update the stage's torchmetrics with a batch; ``log_epoch`` logs them once an epoch (logging metric
        objects every step costs Lightning more than the update itself: docs/speed.md)."""
        if self.counts_only:
            self.pending[stage].append((predictions.detach(), targets))
            if len(self.pending[stage]) == FLUSH_EVERY:
                self.flush(stage)
        else:
            getattr(self, f"{stage}_metrics").update(predictions.detach(), targets)
        getattr(self, f"{stage}_loss").update(loss.detach().expand(len(targets)))

    def flush(self, stage: str) -> None:
        """Update the stage's count metrics with the batches gathered since the last flush."""
        if pending := self.pending[stage]:
            getattr(self, f"{stage}_metrics").update(torch.cat([p for p, _ in pending]), torch.cat([t for _, t in pending]))
            pending.clear()

    def log_epoch(self, stage: str) -> None:
        """Log the stage's epoch loss and metrics, computed over all ranks by torchmetrics, and reset them."""
        self.flush(stage)
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        loss: MeanMetric = getattr(self, f"{stage}_loss")
        if loss.update_count:  # sync_dist: the values are the same on every rank already; says so to Lightning
            self.log(f"{stage}/loss", loss.compute(), prog_bar=True, sync_dist=True)
            self.log_dict({**metrics.compute(), **self.step_axis()}, sync_dist=True)
        loss.reset()
        metrics.reset()

    def step_axis(self) -> dict[str, float]:
        """The x of the epoch's points, as Lightning reads a logged ``step``: ``global_step``, the steps done, where
        the panels draw too (Lightning's own x for epoch-end points is one less during fit). With ``step`` logged
        Lightning adds no ``epoch``: it is logged during fit only, since outside fit Lightning's ``current_epoch`` counts
        the epochs done, one past the last. At step 0 Lightning's own x and epoch are these already."""
        if not self.global_step:
            return {}
        fitting = self.trainer.state.fn == "fit"
        return {"step": float(self.global_step), **({"epoch": float(self.current_epoch)} if fitting else {})}

    def check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        # On an accelerator the check is a host sync: do it every 50 steps there, every step on CPU.
        if loss.device.type != "cpu" and batch_idx % 50:
            return
        if not torch.isfinite(loss):
            lr = self.optimizers().optimizer.param_groups[0]["lr"]
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}). The usual cause is a learning rate "
                f"that is too high for this model (lr={lr:g}); try a smaller "
                "--model.init_args.optimizer.init_args.lr, feature standardisation, or gradient clipping."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets scripts load a checkpoint without being told its class (lightning_models.training.checkpoints).
        checkpoint["module_class"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        total_updates = self.total_updates()  # the one place that knows the run's length
        fill_in = getattr(self.make_scheduler, "keywords", {}).get("total_steps", 0) is None  # jsonargparse's partial
        scheduler = self.make_scheduler(optimizer, **({"total_steps": total_updates} if fill_in else {}))
        # "step": Lightning steps it after every optimizer step (optimizer_step steps it for the extra updates).
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

