"""Seconds of training until a validation metric first reaches a target, logged as a metric: the objective of a sweep
for speed (configs/sweeps/fashion_cnn_time.yaml) and a number any run can report."""

from __future__ import annotations

import time

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from lightning_models.checks import ConfigError, check_positive


class TimeToTarget(pl.Callback):
    """Logs ``val/seconds_to_target``: the training seconds (validations included) until the first validation where
    ``monitor`` reached ``target`` (``mode`` max: ``>=``, min: ``<=``); short of it, the seconds so far times
    ``1 + penalty * |target - best value so far|``. Logged at the training epoch's end (a pruner reads it one validation
    late) and by the best checkpoint's validation after fit (metrics.json). ``stop``: end the fit once reached."""

    def __init__(self, monitor: str = "val/acc", target: float = 0.93, mode: str = "max", penalty: float = 100.0,
                 stop: bool = False) -> None:
        if mode not in ("max", "min"):
            raise ConfigError(f"TimeToTarget mode={mode!r}; expected max or min")
        check_positive("penalty", penalty)
        self.monitor, self.target, self.mode, self.penalty, self.stop = monitor, target, mode, penalty, stop
        self.started: float | None = None
        self.reached: float | None = None  # the seconds at the first validation that reached the target
        self.value: float | None = None
        self.best: float | None = None  # the monitor's best value so far

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started, self.reached, self.value, self.best = time.perf_counter(), None, None, None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Here, not at the validation epoch's end: callbacks run before the module there, so its metrics are not in yet
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.started is None:
            return
        seconds = time.perf_counter() - self.started
        if self.reached is None and self.monitor in trainer.callback_metrics:
            value = float(trainer.callback_metrics[self.monitor])
            better = max if self.mode == "max" else min
            self.best = value if self.best is None else better(self.best, value)
            if better(value, self.target) == value:
                self.reached = seconds
                trainer.should_stop = trainer.should_stop or self.stop
        distance = abs(self.target - self.best) if self.best is not None else 1.0
        self.value = self.reached if self.reached is not None else seconds * (1 + self.penalty * distance)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.value is not None:  # the first hook after the validation that may log
            pl_module.log("val/seconds_to_target", self.value)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING and self.value is not None:  # the best checkpoint's, after fit
            pl_module.log("val/seconds_to_target", self.value)
