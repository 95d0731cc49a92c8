"""One run: build the parts, fit, validate and test the best checkpoint, record: ``run("configs/x.yaml", "--seed_everything=1")``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchmetrics
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_models.callbacks.class_balance import ClassBalance
from lightning_models.checks import ConfigError
from lightning_models.machine import code_record, machine_record
from lightning_models.training.checkpoints import LastCheckpoint
from lightning_models.training.cli import TemplateCLI, pairs_of
from lightning_models.training.errors import config_error_in, refused
from lightning_models.training.hparams import hparams_summaries, readable_hparams
from lightning_models.training.run_folders import run_folder


@dataclass
class Parts:
    """Model, datamodule, trainer and the resolved config (a jsonargparse Namespace)."""

    model: pl.LightningModule
    datamodule: pl.LightningDataModule
    trainer: pl.Trainer
    config: Any


@dataclass
class RunResult:
    """What ``run`` returns; ``record`` is ``metrics.json``."""

    metrics: dict[str, dict[str, float]]
    folder: Path
    checkpoints: dict[str, str | None]
    config: dict[str, Any]
    record: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)  # what a metric key leaves unsaid: {"f1": "macro F1"}
    tensorboard: bool = False


def arguments(args: Sequence[str | Path]) -> list[str]:
    """``run("configs/x.yaml", "--trainer.max_epochs=3")``: a word that is not an option is a config file."""
    words: list[str] = []
    for arg in map(str, args):
        starts_value = bool(words) and words[-1].startswith("--") and "=" not in words[-1]
        words += [arg] if arg.startswith("-") or starts_value else ["--config", arg]
    return words


def build(*args: str | Path, stage: str = "fit", callbacks: Sequence[pl.Callback] = (), several_devices: bool = False) -> Parts:
    """The parts as ``scripts/train.py STAGE`` builds them; bad input is a one-line ConfigError."""
    words = arguments(args)
    try:
        cli = TemplateCLI(words, stage=stage, callbacks=callbacks, several_devices=several_devices)
    except argparse.ArgumentError as error:
        files = [value for key, value in pairs_of(words) if key in ("--config", "-c")]
        raise config_error_in(error) or ConfigError(refused(error, files)) from None
    except ValueError as error:  # our own check, wrapped by jsonargparse while instantiating
        raise config_error_in(error) or error from None
    return Parts(cli.model, cli.datamodule, cli.trainer, cli.config)


def run(*args: str | Path, callbacks: Sequence[pl.Callback] = (), several_devices: bool = False) -> RunResult:
    """Fit, validate and test the best checkpoint, write ``metrics.json``; ``args`` as ``scripts/train.py fit`` takes them."""
    import torchvision

    from lightning_models.callbacks.panel import PredictionPanel

    started = time.perf_counter()
    balance = ClassBalance()  # class rows and predictions per split, for classification runs
    model, datamodule, trainer, config = vars(build(*args, callbacks=[*callbacks, balance], several_devices=several_devices)).values()
    stamp = {"precision": trainer.precision, "machine": machine_record(trainer.strategy.root_device, trainer), "code": code_record()}
    own = readable_hparams(model, config.log_hparams)
    hparams = {**own, "precision": stamp["precision"],  # then what ran it, as HParams columns: machine/cpu...
               **{f"{group}/{key}": value for group in ("machine", "code") for key, value in (stamp[group] or {}).items()}}
    for logger in trainer.loggers:  # TensorBoard: hparams.yaml; MLflow: the run's parameters
        logger.log_hyperparams(hparams)

    trainer.fit(model, datamodule=datamodule, ckpt_path=config.ckpt_path)

    # read before validate/test restore the callbacks' older state
    paths = {"last" if isinstance(callback, LastCheckpoint) else "best": str(Path(callback.best_model_path).resolve())
             for callback in trainer.checkpoint_callbacks if callback.best_model_path}
    best, last = paths.get("best"), paths.get("last")
    metrics = {"train": stage_metrics("train", trainer.callback_metrics)}
    if config.test_after_fit:  # fast_dev_run saves no checkpoint: then the weights in memory are evaluated
        # the best weights' validation goes to the loggers as final_val/*, not as one more point on the val/* curve
        panels = [callback for callback in trainer.callbacks if isinstance(callback, PredictionPanel)]
        loggers, trainer.loggers = trainer.loggers, []
        for panel in panels:
            panel.paused = True
        metrics["val"] = stage_metrics("val", trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0])
        trainer.loggers = loggers
        for panel in panels:
            panel.paused = False
        metrics["test"] = stage_metrics("test", trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0])
    record = {
        "experiment": config.experiment_name,
        "config": [str(path) for path in config.get("config") or []],
        "seed": config.seed_everything,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "checkpoints": {"best": best, "last": last},
        "metrics_from": {"train": "the last training epoch", "val": best or "the weights in memory",
                         "test": best or "the weights in memory"},
        **stamp,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "pytorch_lightning": pl.__version__, "torchmetrics": torchmetrics.__version__},
        **metrics,
        **({"classes": classes} if (classes := balance.record(trainer)) else {}),
        **({"dropped_rows": dict(dropped)} if (dropped := getattr(datamodule, "dropped_rows", None)) is not None else {}),
    }
    folder = run_folder(trainer)
    if trainer.is_global_zero:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        report_final_metrics(trainer, hparams, set(own), metrics)
    tensorboard = any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)
    return RunResult(metrics, folder.resolve(), record["checkpoints"], config.as_dict(), record, metric_labels(model), tensorboard)


def evaluate(stage: str, *args: str | Path) -> list[Any]:
    """``validate``, ``test`` or ``predict`` with the config's parts and ``--ckpt_path``'s weights."""
    parts = build(*args, stage=stage)
    return getattr(parts.trainer, stage)(parts.model, datamodule=parts.datamodule, ckpt_path=parts.config.ckpt_path)


def stage_metrics(stage: str, logged: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in logged.items()
            if key not in ("step", "epoch") and (stage != "train" or key.startswith("train"))}


def report_final_metrics(trainer: pl.Trainer, hparams: dict[str, Any], own: set[str], metrics: dict[str, dict[str, float]]) -> None:
    """``final_test/*`` and ``final_val/*`` at the last step to every logger, metrics before losses (HParams shows five)."""
    final = {f"final_{stage}/{key.split('/', 1)[-1]}": value for stage in ("test", "val")
             for key, value in sorted(metrics.get(stage, {}).items(), key=lambda item: item[0].endswith("/loss"))}
    for logger in trainer.loggers:
        if final:
            logger.log_metrics(final, step=trainer.global_step)
            if isinstance(logger, TensorBoardLogger):
                for summary in hparams_summaries(hparams, final, own):
                    logger.experiment.file_writer.add_summary(summary, trainer.global_step)
        logger.finalize("success")  # close the files now, not at interpreter exit


def metric_labels(model: pl.LightningModule) -> dict[str, str]:
    """``{"f1": "macro F1"}`` for a score averaged over the classes."""
    labels = {}
    for stage in ("val", "test"):
        collection = getattr(model, f"{stage}_metrics", None)
        for name, metric in collection.items(keep_base=True) if isinstance(collection, torchmetrics.MetricCollection) else ():
            if (average := getattr(metric, "average", None)) in ("macro", "weighted"):
                kind = type(metric).__name__.removeprefix("Multiclass").removeprefix("Multilabel").removesuffix("Score")
                labels[name] = f"{average} {kind}"
    return labels
