"""The template's LightningCLI: ``configs/defaults.yaml``, then the configs and options; below, what YAML cannot say."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from jsonargparse import Namespace
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities import rank_zero_warn

from lightning_models.callbacks.rng import GlobalRNGState
from lightning_models.checks import ConfigError
from lightning_models.machine import auto_precision
from lightning_models.training.checkpoints import LastCheckpoint, read_checkpoint
from lightning_models.training.run_folders import LOG_ROOT, newest_last_checkpoint, next_version, run_folder
from lightning_models.training.trainer import Trainer
from lightning_models.util import import_class

DEFAULTS = Path(__file__).resolve().parents[2] / "configs" / "defaults.yaml"
DEFAULT_MONITOR = "val/loss"  # defaults.yaml's checkpoint.monitor
FOLDER_LOGGERS = {f"{package}.loggers.{name}" for package in ("pytorch_lightning", "lightning.pytorch")
                  for name in ("TensorBoardLogger", "CSVLogger")}  # loggers whose version_N folder is the run folder
STAGES = ("fit", "validate", "test", "predict")
SIZES = ("num_features", "num_outputs")  # linked from the datamodule into models whose constructor takes them


def no_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")


def pairs_of(args: Sequence[str]) -> list[tuple[str, str]]:
    """Command-line words as (key, value) pairs, in order: ``--key=value`` and ``--key value`` alike."""
    words, pairs = list(args), []
    while words:
        key, equals, value = words.pop(0).partition("=")
        if not equals and words and not words[0].startswith("--"):
            value = words.pop(0)
        pairs.append((key, value))
    return pairs


def experiment_name(config: Namespace) -> str:
    """``experiment_name`` where a config or option sets it, else the first config file's stem (docs/loggers.md)."""
    return config.experiment_name or (Path(str(config.config[0])).stem if config.get("config") else "default")


def datamodule_size(name: str, wanted: Callable[[], set[str]]) -> Callable[[pl.LightningDataModule], int | None]:
    def size(datamodule: pl.LightningDataModule) -> int | None:
        if name not in wanted():
            return None  # the model takes no such argument: jsonargparse drops the link
        value = getattr(datamodule, name, None)
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{type(datamodule).__name__}.{name} is {value!r} after its __init__; the model is built "
                              f"from it before setup(), so the datamodule must know {name} once constructed.")
        return value

    return size


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that keeps the newest weights, with a warning, where the module logs no default monitor."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and self.monitor == DEFAULT_MONITOR and self.monitor not in trainer.callback_metrics:
            rank_zero_warn(f"checkpoint: {type(pl_module).__name__} logs no {self.monitor!r}, the default monitor; the "
                           "checkpoint keeps the newest weights. Set --checkpoint.monitor to a metric it logs "
                           f"({', '.join(sorted(trainer.callback_metrics)) or 'none so far'}) or null.")
            self.monitor = None
        super().on_validation_end(trainer, pl_module)


class RunConfig(SaveConfigCallback):
    """``config.yaml`` into the run folder whatever the logger; ``predict`` leaves the trained run's alone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False, "overwrite": True})

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "predict":
            folder = run_folder(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(folder / self.config_filename), skip_none=False, overwrite=True,
                             multifile=self.multifile)


class TemplateCLI(LightningCLI):
    """LightningCLI that builds (``run=False``) for ``stage``, with ``GlobalRNGState`` and ``callbacks`` in the trainer."""

    def __init__(self, args: Sequence[str], stage: str = "fit", callbacks: Sequence[pl.Callback] = (),
                 several_devices: bool = False) -> None:
        self.stage, self.words, self.several_devices = stage, list(args), several_devices
        for message in (r".*isinstance\(treespec, LeafSpec\)` is deprecated", "Couldn't infer the batch indices",
                        "LightningCLI's args parameter"):  # Lightning's noise that says nothing about the run
            warnings.filterwarnings("ignore", message=message)
        logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(no_tips)  # the same function: added once
        super().__init__(pl.LightningModule, pl.LightningDataModule, trainer_class=Trainer, args=list(args), run=False,
                         subclass_mode_model=True, subclass_mode_data=True, seed_everything_default=0,
                         save_config_callback=RunConfig, trainer_defaults={"callbacks": [GlobalRNGState(), *callbacks]},
                         parser_kwargs={"default_config_files": [str(DEFAULTS)], "exit_on_error": False})

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--experiment_name", type=str | None, help="Run folder under lightning_logs/ (default: the first config's).")
        parser.add_argument("--ckpt_path", type=str | None, help="fit: resume from it ('last': the newest run's); else the weights.")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="After fit, validate and test the best checkpoint.")
        parser.add_argument("--log_hparams", type=dict[str, Any] | None, help="More columns for TensorBoard's HParams (a sweep's choices).")
        for size in SIZES:
            parser.link_arguments("data", f"model.init_args.{size}", compute_fn=datamodule_size(size, self.model_sizes),
                                  apply_on="instantiate")
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint", subclass_mode=True, required=False)
        parser.add_lightning_class_args(ProgressBar, "progress_bar", subclass_mode=True, required=False)

    def model_sizes(self) -> set[str]:  # jsonargparse lists exactly the chosen model's arguments in init_args
        return {size for size in SIZES if size in (self.config.model.get("init_args") or Namespace())}

    def before_instantiate_classes(self) -> None:
        config = self.config
        config.experiment_name = experiment_name(config)
        if config.trainer.precision == "auto":  # resolved here, so that the run's config.yaml holds the value used
            config.trainer.precision = auto_precision(config.trainer.accelerator)
        if config.trainer.enable_progress_bar is False:
            config.progress_bar = None
        updates = (config.model.get("init_args") or Namespace()).get("updates_per_step") or 1
        if updates > 1 and config.trainer.accumulate_grad_batches > 1:
            raise ConfigError(f"accumulate_grad_batches={config.trainer.accumulate_grad_batches} with updates_per_step={updates}: "
                              "the repeated updates of one batch cannot accumulate; add --model.init_args.updates_per_step=1.")
        resolve_data_paths(config, pairs_of(self.words))
        version = None
        if self.stage == "fit" and config.ckpt_path == "last":
            config.ckpt_path, version = newest_last_checkpoint(config.experiment_name)
        if config.ckpt_path not in (None, "best", "last", "hpc"):  # those Lightning resolves itself
            read_checkpoint(config.ckpt_path)  # a bad file: one line naming it now, not a traceback from Lightning's loader
        if self.stage == "predict":
            predict_into_run_folder(config)
        else:
            name_run_folder(config, version)
        if config.last_checkpoint is not None:  # beside the best checkpoint
            config.last_checkpoint.init_args.dirpath = config.checkpoint.dirpath

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        self.parser.callback_keys = [key for key in self.parser.callback_keys if self.config_init.get(key) is not None]
        trainer = super().instantiate_trainer(**kwargs)
        count = max(trainer.world_size, trainer.num_devices * trainer.num_nodes)
        if count > 1 and not self.several_devices:  # Lightning's launcher starts the calling program again per device
            where = (f"scripts/train.py {self.stage} evaluates every row on every device" if self.stage != "fit" else
                     "a run started from Python (sweep, cross-validation, compare, lab, notebook) trains on one, since "
                     "Lightning would start the calling program again per device; DDP: scripts/train.py fit (docs/resume-ddp.md)")
            raise ConfigError(f"trainer: {count} devices (devices={trainer.num_devices}, num_nodes={trainer.num_nodes}, "
                              f"world size {trainer.world_size}): {where}; use --trainer.devices=1.")
        return trainer


def resolve_data_paths(config: Namespace, pairs: Sequence[tuple[str, str]]) -> None:
    """A datamodule's relative ``path_arguments`` made absolute against the folder of the last config file that sets
    one, or the working folder where the command line sets it after that (the run's config.yaml holds the result)."""
    data = config.get("data")
    try:
        arguments = getattr(import_class(data.class_path), "path_arguments", ())
    except (ImportError, AttributeError, ValueError):
        return  # the parser has named the class already, or will
    init_args = data.get("init_args") or Namespace()
    for argument in arguments:
        value = init_args.get(argument)
        if not isinstance(value, str) or not value or os.path.isabs(value):
            continue
        base = os.getcwd()
        for key, given in pairs:
            if key in ("--config", "-c") and sets(given, argument):
                base = os.path.dirname(os.path.abspath(given))  # abspath: a symlinked configs/ stays where it is named
            elif key in (f"--data.init_args.{argument}", f"--data.{argument}") or (key == "--data" and argument in given):
                base = os.getcwd()
        init_args[argument] = os.path.normpath(os.path.join(base, value))


def sets(config_file: str, argument: str) -> bool:
    try:
        data = (yaml.safe_load(Path(config_file).read_text()) or {}).get("data")
    except (OSError, yaml.YAMLError, AttributeError):
        return False
    return isinstance(data, dict) and (argument in data or argument in (data.get("init_args") or {}))


def name_run_folder(config: Namespace, version: int | None) -> None:
    """TensorBoard and CSV loggers log into ``lightning_logs/<experiment>/version_N``, else ``default_root_dir`` is it."""
    loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
    for logger in loggers:
        if isinstance(logger, Namespace) and logger.class_path in FOLDER_LOGGERS:
            logger.init_args.save_dir = logger.init_args.get("save_dir") or LOG_ROOT
            if logger.init_args.get("name") in (None, "lightning_logs"):  # the loggers' own default name
                logger.init_args.name = config.experiment_name
            if logger.init_args.get("version") is None:
                logger.init_args.version = version
    first = loggers[0]
    folder_logged = isinstance(first, Namespace) and first.class_path in FOLDER_LOGGERS and not config.trainer.fast_dev_run
    if not folder_logged and config.trainer.default_root_dir is None:
        number = version if version is not None else next_version(config.experiment_name)
        config.trainer.default_root_dir = str(Path(LOG_ROOT, config.experiment_name, f"version_{number}"))
        if config.checkpoint.dirpath is None:  # Lightning would put them into an MLflow logger's store
            config.checkpoint.dirpath = str(Path(config.trainer.default_root_dir, "checkpoints"))


def predict_into_run_folder(config: Namespace) -> None:
    """No logger; ``predictions-<split>.csv`` into the checkpoint's run folder."""
    checkpoint = Path(config.ckpt_path) if config.ckpt_path else None
    folder = (checkpoint.resolve().parent.parent if checkpoint is not None and checkpoint.parent.name == "checkpoints"
              else Path(LOG_ROOT, config.experiment_name))
    config.trainer.logger = False
    config.trainer.default_root_dir = config.trainer.default_root_dir or str(folder)
    if not any("PredictionWriter" in str(callback.class_path) for callback in config.trainer.callbacks or []):
        split = (config.data.get("init_args") or Namespace()).get("predict_split") or "test"
        writer = Namespace(class_path="lightning_models.callbacks.predictions.PredictionWriter",
                           init_args=Namespace(path=str(folder / f"predictions-{split}.csv")))
        config.trainer.callbacks = [*(config.trainer.callbacks or []), writer]
