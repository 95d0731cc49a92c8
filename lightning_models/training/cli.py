"""The template's LightningCLI and command line: ``python scripts/train.py fit --config configs/<experiment>.yaml``.

LightningCLI builds every part from ``configs/defaults.yaml``, the experiment's config and the options, in
that order. What YAML cannot say is filled in by the small functions below, before anything is built.
"""

from __future__ import annotations

import logging
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
from lightning_models.training.data_paths import resolve_data_paths
from lightning_models.training.run_folders import LOG_ROOT, newest_last_checkpoint, next_version, run_folder
from lightning_models.training.trainer import Trainer

DEFAULTS = Path(__file__).resolve().parents[2] / "configs" / "defaults.yaml"
FOLDER_LOGGERS = {f"{package}.loggers.{name}" for package in ("pytorch_lightning", "lightning.pytorch")
                  for name in ("TensorBoardLogger", "CSVLogger")}  # loggers whose version_N folder is the run folder
STAGES = ("fit", "validate", "test", "predict")
DEFAULT_MONITOR = yaml.safe_load(DEFAULTS.read_text())["checkpoint"]["monitor"]
LIGHTNING_CHECKPOINT_NAMES = ("best", "last", "hpc")  # validate/test/predict --ckpt_path values the Trainer resolves
SIZES = ("num_features", "num_outputs")  # linked from the datamodule into models whose constructor takes them


def quiet_third_party() -> None:
    """Silence exactly Lightning's advertising tips, the deprecation warning its own ``_pytree`` helper
    triggers in torch, and its note that a prediction writer gets no batch indices from in-memory batches."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"Couldn't infer the batch indices")
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter")  # scripts/train.py hands its argv on
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(no_tips)  # the same function: added once


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


def datamodule_size(name: str, wanted: Callable[[], set[str]]) -> Callable[[pl.LightningDataModule], int | None]:
    """The datamodule's ``num_features``/``num_outputs`` for a model whose constructor takes it (``name`` in
    ``wanted()``), else None, a value jsonargparse drops: it ignores a link whose target the chosen class lacks."""

    def size(datamodule: pl.LightningDataModule) -> int | None:
        if name not in wanted():
            return None
        value = getattr(datamodule, name, None)
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{type(datamodule).__name__}.{name} is {value!r} after its __init__; the model is built "
                              f"from it before setup(), so the datamodule must know {name} once constructed.")
        return value

    return size


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint (the ``checkpoint`` settings), except that a module that never logs the default
    monitor (``val/loss``: a LightningModule of the user's own) keeps its newest weights, with one warning, instead of
    stopping the run; a monitor the config chose itself stays Lightning's error when the module does not log it."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logged = {*trainer.callback_metrics, "epoch", "step"}  # what ModelCheckpoint can monitor
        if not trainer.sanity_checking and self.monitor == DEFAULT_MONITOR and self.monitor not in logged:
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
    """LightningCLI with ``configs/defaults.yaml`` under every config, building (``run=False``) for one ``stage``; every
    trainer gets ``GlobalRNGState`` (a resumed fit draws what an uninterrupted one would) besides ``callbacks``. A
    trainer on more than one device is refused unless ``several_devices`` (``refuse_several_devices``)."""

    def __init__(self, args: Sequence[str], stage: str = "fit", callbacks: Sequence[pl.Callback] = (),
                 several_devices: bool = False) -> None:
        self.stage, self.words, self.several_devices = stage, list(args), several_devices
        quiet_third_party()
        super().__init__(pl.LightningModule, pl.LightningDataModule, trainer_class=Trainer, args=list(args), run=False,
                         subclass_mode_model=True, subclass_mode_data=True, seed_everything_default=0,
                         save_config_callback=RunConfig, trainer_defaults={"callbacks": [GlobalRNGState(), *callbacks]},
                         parser_kwargs={"default_config_files": [str(DEFAULTS)], "exit_on_error": False})

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--experiment_name", type=str | None, default=None,
                            help="Run folder under lightning_logs/ (default: the config file's name).")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="fit: resume from this checkpoint ('last': the newest run's last.ckpt); else the weights.")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="After fit, validate and test the best checkpoint.")
        parser.add_argument("--log_hparams", type=dict[str, Any] | None, default=None,
                            help="Extra values for TensorBoard's HParams tab, beside the module's (a sweep's choices).")
        for size in SIZES:
            parser.link_arguments("data", f"model.init_args.{size}", compute_fn=datamodule_size(size, self.model_sizes),
                                  apply_on="instantiate")
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint", subclass_mode=True, required=False)
        parser.add_lightning_class_args(ProgressBar, "progress_bar", subclass_mode=True, required=False)

    def model_sizes(self) -> set[str]:
        """The sizes the chosen model's constructor takes: jsonargparse lists exactly its arguments in init_args."""
        init_args = self.config.model.get("init_args") or Namespace()
        return {size for size in SIZES if size in init_args}

    def before_instantiate_classes(self) -> None:
        config = self.config
        if config.experiment_name is None:
            config.experiment_name = Path(str(config.config[-1])).stem if config.get("config") else "default"
        if config.trainer.precision == "auto":  # resolved here, so that the run's config.yaml holds the value used
            config.trainer.precision = auto_precision(config.trainer.accelerator)
        if config.trainer.enable_progress_bar is False:
            config.progress_bar = None
        refuse_accumulation_with_repeated_updates(config)
        resolve_data_paths(config, pairs_of(self.words))
        version = None
        if self.stage == "fit" and config.ckpt_path == "last":
            config.ckpt_path, version = newest_last_checkpoint(config.experiment_name)
        if config.ckpt_path is not None and config.ckpt_path not in LIGHTNING_CHECKPOINT_NAMES:
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
        refuse_several_devices(trainer, self.stage, self.several_devices)
        return trainer


def refuse_several_devices(trainer: pl.Trainer, stage: str, allowed: bool) -> None:
    """One device per run unless the caller allows more: for several devices Lightning's launcher starts the program
    that called it again once per device, which is right for ``scripts/train.py fit`` (the only caller that allows it)
    and wrong for a sweep worker, cross-validation, compare, the lab or a notebook, whose copies would start runs of
    their own. Evaluation stages gain nothing: their splits are not divided between devices."""
    count = max(trainer.world_size, trainer.num_devices * trainer.num_nodes)
    if count <= 1 or allowed:
        return
    where = (f"scripts/train.py {stage} evaluates every row on every device" if stage != "fit" else
             "a run started from Python (sweep, cross-validation, compare, lab, notebook) trains on one, since Lightning "
             "would start the calling program again per device; DDP: scripts/train.py fit (docs/resume-ddp.md)")
    raise ConfigError(f"trainer: {count} devices (devices={trainer.num_devices}, num_nodes={trainer.num_nodes}, world size "
                      f"{trainer.world_size}): {where}; use --trainer.devices=1.")


def refuse_accumulation_with_repeated_updates(config: Namespace) -> None:
    updates = (config.model.get("init_args") or Namespace()).get("updates_per_step") or 1
    if updates > 1 and config.trainer.accumulate_grad_batches > 1:
        raise ConfigError(f"accumulate_grad_batches={config.trainer.accumulate_grad_batches} with updates_per_step={updates}: "
                          "the repeated updates of one batch cannot accumulate; add --model.init_args.updates_per_step=1.")


def name_run_folder(config: Namespace, version: int | None) -> None:
    """TensorBoard and CSV loggers log into ``lightning_logs/<experiment>/version_N``; with no logger or another
    first (MLflow...), or under fast_dev_run (which drops the loggers), that folder is ``default_root_dir`` and holds
    the checkpoints, config and metrics (fast_dev_run: metrics only)."""
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
    """``predict``: no logger, no new run folder; ``predictions-<split>.csv`` goes into the checkpoint's run folder."""
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
