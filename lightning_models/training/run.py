"""One run, top to bottom: build the parts from the config, fit, validate and test the best checkpoint, record.

    from lightning_models import run
    result = run("configs/iris_mlp_classifier.yaml", "--trainer.max_epochs=3")
    result.metrics["test"]["test/acc"], result.folder, result.checkpoints["best"]

``scripts/train.py fit`` calls ``run`` with its command-line options; sweeps, cross-validation, the lab and the
tests call it from Python. ``build`` is the part under it that only builds (nothing is trained or written).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_models.callbacks.class_balance import ClassBalance
from lightning_models.checks import ConfigError
from lightning_models.machine import code_record, machine_record
from lightning_models.training.checkpoints import LastCheckpoint
from lightning_models.training.cli import TemplateCLI
from lightning_models.training.errors import config_error_in, refused_argument
from lightning_models.training.hparams import readable_hparams
from lightning_models.training.run_folders import run_folder
from lightning_models.training.run_report import flat_stamp, metric_labels, print_summary, report_final_metrics


@dataclass
class Parts:
    """What a config builds: the model, the datamodule, the trainer, and the resolved config (a jsonargparse Namespace)."""

    model: pl.LightningModule
    datamodule: pl.LightningDataModule
    trainer: pl.Trainer
    config: Any


@dataclass
class RunResult:
    """What ``run`` returns (and writes as ``metrics.json``): metrics by stage, the run folder, checkpoint paths."""

    metrics: dict[str, dict[str, float]]
    folder: Path
    checkpoints: dict[str, str | None]
    config: dict[str, Any]
    record: dict[str, Any]


def arguments(args: Sequence[str | Path]) -> list[str]:
    """``run("configs/x.yaml", "--trainer.max_epochs=3")``: a word that is not an option is a config file."""
    words: list[str] = []
    for arg in map(str, args):
        starts_value = bool(words) and words[-1].startswith("--") and "=" not in words[-1]
        words += [arg] if arg.startswith("-") or starts_value else ["--config", arg]
    return words


def build(*args: str | Path, stage: str = "fit", callbacks: Sequence[pl.Callback] = (), several_devices: bool = False) -> Parts:
    """Model, datamodule and trainer exactly as ``scripts/train.py STAGE`` builds them from the same arguments. A trainer
    on more than one device is refused (one ConfigError line) unless ``several_devices``: Lightning's launcher would start
    the calling program again per device, which only ``scripts/train.py fit`` is made for."""
    words = arguments(args)
    try:
        cli = TemplateCLI(words, stage=stage, callbacks=callbacks, several_devices=several_devices)
    except argparse.ArgumentError as error:  # the parser's report: one line on what it refused instead
        raise config_error_in(error) or ConfigError(refused_argument(words)) from None
    except ValueError as error:  # raised while building: our own check, wrapped by jsonargparse
        raise config_error_in(error) or error from None
    return Parts(cli.model, cli.datamodule, cli.trainer, cli.config)


def run(*args: str | Path, callbacks: Sequence[pl.Callback] = (), several_devices: bool = False) -> RunResult:
    """Fit the config's model, then validate and test its best checkpoint; ``metrics.json`` into the run folder.

    ``args``: config files and command-line options, as ``scripts/train.py fit`` takes them; ``callbacks``:
    extra callback objects (a sweep's pruning); ``several_devices``: see ``build``. Raises on bad input
    (``argparse.ArgumentError``, ``ConfigError``).
    """
    started = time.perf_counter()
    balance = ClassBalance()  # class rows and predictions per split, for classification runs
    parts = build(*args, callbacks=[*callbacks, balance], several_devices=several_devices)
    model, datamodule, trainer, config = parts.model, parts.datamodule, parts.trainer, parts.config
    stamp = {"precision": trainer.precision, "machine": machine_record(trainer.strategy.root_device, trainer), "code": code_record()}
    own = readable_hparams(model, config.log_hparams)
    hparams = {**own, **flat_stamp(stamp)}
    for logger in trainer.loggers:  # TensorBoard: hparams.yaml; MLflow: the run's parameters
        logger.log_hyperparams(hparams)

    trainer.fit(model, datamodule=datamodule, ckpt_path=config.ckpt_path)

    best, last = checkpoint_paths(trainer)
    metrics = {"train": stage_metrics("train", trainer.callback_metrics)}
    if config.test_after_fit:  # fast_dev_run saves no checkpoint: then the weights in memory are evaluated
        # The panels drew during fit; this validation gives the best weights' numbers, which go to the loggers as
        # final_val/* (report_final_metrics), not as one more val/* point after the curve's last epoch.
        with panels_paused(trainer), loggers_detached(trainer):
            metrics["val"] = stage_metrics("val", trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0])
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
        "versions": library_versions(),
        **metrics,
        **({"classes": classes} if (classes := balance.record(trainer)) else {}),
        **({"dropped_rows": dict(dropped)} if (dropped := getattr(datamodule, "dropped_rows", None)) is not None else {}),
    }
    folder = run_folder(trainer)
    if trainer.is_global_zero:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        report_final_metrics(trainer, hparams, set(own), metrics)
        print_summary(config.experiment_name, folder, metrics, trainer, record, metric_labels(model))
    return RunResult(metrics, folder.resolve(), record["checkpoints"], config.as_dict(), record)


def evaluate(stage: str, *args: str | Path) -> list[Any]:
    """``validate``, ``test`` or ``predict`` with the config's parts and ``--ckpt_path``'s weights."""
    parts = build(*args, stage=stage)
    return getattr(parts.trainer, stage)(parts.model, datamodule=parts.datamodule, ckpt_path=parts.config.ckpt_path)


def checkpoint_paths(trainer: pl.Trainer) -> tuple[str | None, str | None]:
    """The best and the last checkpoint files (absolute), or None. Read before validate/test: loading a
    checkpoint restores the callbacks' older state."""
    paths = {"best": None, "last": None}
    for callback in trainer.checkpoint_callbacks:
        if callback.best_model_path:
            paths["last" if isinstance(callback, LastCheckpoint) else "best"] = str(Path(callback.best_model_path).resolve())
    return paths["best"], paths["last"]


@contextlib.contextmanager
def panels_paused(trainer: pl.Trainer) -> Iterator[None]:
    from lightning_models.callbacks.panel import PredictionPanel

    panels = [callback for callback in trainer.callbacks if isinstance(callback, PredictionPanel)]
    for panel in panels:
        panel.paused = True
    try:
        yield
    finally:
        for panel in panels:
            panel.paused = False


def stage_metrics(stage: str, logged: dict[str, Any]) -> dict[str, float]:
    """The stage's metrics of what Lightning logged, as floats: not the ``step`` and ``epoch`` that place them on the
    axis (TaskModule.step_axis); for ``train``, of all the callback metrics, those named ``train...``."""
    return {key: float(value) for key, value in logged.items()
            if key not in ("step", "epoch") and (stage != "train" or key.startswith("train"))}


@contextlib.contextmanager
def loggers_detached(trainer: pl.Trainer) -> Iterator[None]:
    """The trainer without loggers for a while: what is logged meanwhile reaches callback_metrics and the returned
    results only."""
    loggers = trainer.loggers
    trainer.loggers = []
    try:
        yield
    finally:
        trainer.loggers = loggers


def library_versions() -> dict[str, str]:
    import torchmetrics
    import torchvision

    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pytorch_lightning": pl.__version__, "torchmetrics": torchmetrics.__version__}
