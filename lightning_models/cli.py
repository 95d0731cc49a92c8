"""The template's LightningCLI: ``python scripts/train.py fit --config configs/<experiment>.yaml``."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from jsonargparse import Namespace
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_models.checkpoints import LastCheckpoint
from lightning_models.checks import ConfigError

LOG_ROOT = "lightning_logs"
FOLDER_LOGGERS = (TensorBoardLogger, CSVLogger)  # loggers whose version_N folder is the run folder


def no_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")  # Lightning's cloud-service adverts


def quiet_third_party() -> None:
    """Silence exactly the third-party noise of a normal run: Lightning's advertising tips, the
    deprecation warning its own ``_pytree`` helper triggers in torch, and its note that a prediction
    writer gets no batch indices from in-memory batches. Everything else still shows."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"Couldn't infer the batch indices")  # PredictionWriter needs none
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(no_tips)  # a set: added once


def library_versions() -> dict[str, str]:
    import torchmetrics
    import torchvision

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pytorch_lightning": pl.__version__,
        "torchmetrics": torchmetrics.__version__,
    }


def run_folder(trainer: pl.Trainer) -> Path:
    """The run folder: the first logger's ``version_N`` when it is TensorBoard or CSV, else the trainer's
    ``default_root_dir``, which the CLI sets to ``lightning_logs/<experiment>/version_N`` (no logger, or
    only loggers with their own store, such as MLflow)."""
    first = trainer.loggers[0] if trainer.loggers else None
    return Path(first.log_dir) if isinstance(first, FOLDER_LOGGERS) else Path(trainer.default_root_dir)


def run_folders(experiment: str, root: str | Path = LOG_ROOT) -> dict[int, Path]:
    """``<root>/<experiment>/version_N`` folders by N."""
    found = {}
    for path in Path(root, experiment).glob("version_*"):
        if (suffix := path.name.removeprefix("version_")).isdigit():
            found[int(suffix)] = path
    return found


def next_version(experiment: str, root: str | Path = LOG_ROOT) -> int:
    return max(run_folders(experiment, root), default=-1) + 1


class RunConfig(SaveConfigCallback):
    """``config.yaml`` into the run folder whatever the logger (Lightning's own goes to ``trainer.log_dir``,
    which for an MLflow logger is its store); ``predict`` does not overwrite the trained run's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False})

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "predict":
            return
        folder = run_folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(folder / self.config_filename), skip_none=False, overwrite=self.overwrite,
                         multifile=self.multifile)


def class_defaults(cls: Any) -> dict[str, Any]:
    """Default values of the ``__init__`` arguments of ``cls`` and its bases (the subclass's win)."""
    defaults: dict[str, Any] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        try:
            parameters = inspect.signature(klass.__init__ if isinstance(klass, type) else klass).parameters
        except (TypeError, ValueError):
            continue
        defaults.update({name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty})
    return defaults


def import_class(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def same(a: Any, b: Any) -> bool:
    """Equal as a config would write them (YAML lists for tuples)."""
    a, b = (list(v) if isinstance(v, tuple) else v for v in (a, b))
    try:
        return bool(a == b)
    except (RuntimeError, ValueError):  # tensors
        return False


ALWAYS_SHOWN = ("num_features", "num_outputs", "net", "optimizer", "scheduler")


def readable_key(key: str) -> str:
    """A command-line key as the HParams tab names it: ``model.init_args.net.init_args.hidden_sizes`` ->
    ``net.hidden_sizes``, ``data.init_args.batch_size`` -> ``data.batch_size``."""
    return key.removeprefix("model.init_args.").replace(".init_args.", ".")


def readable_hparams(model: pl.LightningModule) -> dict[str, Any]:
    """The hyperparameters a person compares, for TensorBoard's HParams tab and the other loggers: each
    injected class by its name (``net: MLP``, ``optimizer: AdamW``, ``scheduler: OneCycleLR``), and
    ``<name>.<argument>`` and the module's own arguments where they differ from the defaults (``lr``
    always); LightningCLI's internals (``_instantiator``, ``_class_path``) left out."""
    defaults = class_defaults(type(model))
    shown: dict[str, Any] = {}
    for key, value in model.hparams.items():
        value = value.as_dict() if hasattr(value, "as_dict") else value  # jsonargparse Namespace
        if key.startswith("_"):
            continue
        if isinstance(value, dict) and "class_path" in value:
            shown[key] = value["class_path"].rsplit(".", 1)[-1]
            arguments = class_defaults(import_class(value["class_path"]))
            for name, given in (value.get("init_args") or {}).items():
                if name == "lr" or name not in arguments or not same(given, arguments[name]):
                    shown[f"{key}.{name}"] = given
        elif isinstance(value, type) or callable(value):
            shown[key] = getattr(value, "__name__", type(value).__name__)
        elif key in ALWAYS_SHOWN or key not in defaults or not same(value, defaults[key]):
            shown[key] = value  # sizes, and an injected part left out (scheduler: None), are shown too
    return shown


class TemplateCLI(LightningCLI):
    """LightningCLI with the template's defaults.

    - models and datamodules are chosen by class path (``--model my_pkg.MyModule``); the
      datamodule's ``num_features``/``num_outputs`` are linked into the model's arguments;
    - TensorBoard logs under ``lightning_logs/<experiment_name>/version_N``, the run folder (also with
      ``--trainer.logger false``, a CSV logger or an MLflow one);
    - a ``checkpoint`` group (ModelCheckpoint): best by ``val/loss``; ``checkpoints/last.ckpt`` after
      every validation (``--last_checkpoint false`` turns it off);
    - after ``fit``, the best checkpoint is validated and tested (``--test_after_fit false``
      skips it) and ``metrics.json`` is written into the run folder; every logger gets the final
      metrics and the readable hyperparameters (``readable_hparams``);
    - ``predict`` writes ``predictions-<split>.csv`` into the checkpoint's run folder.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        quiet_third_party()
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", RunConfig)
        super().__init__(
            pl.LightningModule, pl.LightningDataModule, *args,
            subclass_mode_model=True, subclass_mode_data=True, **kwargs,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--experiment_name", type=str, default=None,
                            help="Run folder under lightning_logs/ (default: the config file's name).")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="After fit, validate and test the best checkpoint and write metrics.json.")
        parser.add_argument("--last_checkpoint", type=bool, default=True,
                            help="Write checkpoints/last.ckpt after every validation (what --ckpt_path last resumes).")
        parser.add_argument("--log_hparams", type=dict[str, Any] | None, default=None,
                            help="Extra values for TensorBoard's HParams tab, beside the module's (a sweep's choices).")
        parser.link_arguments("data.num_features", "model.init_args.num_features", apply_on="instantiate")
        parser.link_arguments("data.num_outputs", "model.init_args.num_outputs", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/loss",
            "checkpoint.mode": "min",
            "checkpoint.save_last": False,  # since Lightning 2.6 it writes last.ckpt only when the best improves
            "checkpoint.filename": "best-epoch{epoch}-step{step}",
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.save_on_train_epoch_end": False,
        })

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.experiment_name is None:
            paths = config.get("config") or []
            config.experiment_name = Path(str(paths[0])).stem if paths else "default"
        callbacks = config.trainer.callbacks or []
        if config.trainer.enable_progress_bar is not False and not any(
            "ProgressBar" in str(callback.class_path) for callback in callbacks
        ):
            callbacks = [*callbacks, Namespace(class_path="pytorch_lightning.callbacks.RichProgressBar")]
        version = None
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            config.ckpt_path, version = newest_last_checkpoint(config.experiment_name)
        if self.subcommand == "predict":
            callbacks = self.prepare_predict(config, callbacks)
        else:
            self.prepare_loggers(config, version)
            if config.get("last_checkpoint", True) and not any("LastCheckpoint" in str(c.class_path) for c in callbacks):
                callbacks = [*callbacks, Namespace(class_path="lightning_models.checkpoints.LastCheckpoint",
                                                   init_args=Namespace(dirpath=config.get("checkpoint.dirpath")))]
        config.trainer.callbacks = callbacks

    def prepare_loggers(self, config: Namespace, version: int | None) -> None:
        """TensorBoard by default; a TensorBoard or CSV logger given without a folder logs under
        ``lightning_logs/<experiment>/version_N``; with no logger, or another first (MLflow...), that
        folder is ``default_root_dir`` and holds the checkpoints, ``config.yaml`` and ``metrics.json``."""
        if config.trainer.logger in (None, True):
            config.trainer.logger = Namespace(class_path="pytorch_lightning.loggers.TensorBoardLogger",
                                              init_args=Namespace(save_dir=LOG_ROOT, default_hp_metric=False))
        loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
        folders = ("pytorch_lightning.loggers.TensorBoardLogger", "pytorch_lightning.loggers.CSVLogger",
                   "lightning.pytorch.loggers.TensorBoardLogger", "lightning.pytorch.loggers.CSVLogger")
        for logger in loggers:
            if isinstance(logger, Namespace) and logger.class_path in folders:
                arguments = logger.init_args
                if arguments.get("save_dir") is None:
                    arguments.save_dir = LOG_ROOT
                if arguments.get("name") in (None, "lightning_logs"):  # the loggers' default name
                    arguments.name = config.experiment_name
                if arguments.get("version") is None:
                    arguments.version = version
        first = loggers[0] if loggers else False
        if not (isinstance(first, Namespace) and first.class_path in folders) and config.trainer.default_root_dir is None:
            folder = Path(LOG_ROOT, config.experiment_name,
                          f"version_{version if version is not None else next_version(config.experiment_name)}")
            config.trainer.default_root_dir = str(folder)
            if config.checkpoint.dirpath is None:  # Lightning would put them into an MLflow logger's store
                config.checkpoint.dirpath = str(folder / "checkpoints")

    def prepare_predict(self, config: Namespace, callbacks: list) -> list:
        """``predict``: no logger, no new run folder; the predictions go into the checkpoint's run folder
        (``lightning_logs/<experiment>/predictions-<split>.csv`` without a checkpoint)."""
        checkpoint = Path(str(config.get("ckpt_path"))) if config.get("ckpt_path") else None
        folder = (checkpoint.resolve().parent.parent if checkpoint is not None and checkpoint.parent.name == "checkpoints"
                  else Path(LOG_ROOT, config.experiment_name))
        if config.trainer.logger in (None, True):
            config.trainer.logger = False
        if config.trainer.default_root_dir is None:
            config.trainer.default_root_dir = str(folder)
        if any("PredictionWriter" in str(callback.class_path) for callback in callbacks):
            return callbacks
        split = (config.data.get("init_args") or Namespace()).get("predict_split") or "test"
        writer = Namespace(class_path="lightning_models.callbacks.predictions.PredictionWriter",
                           init_args=Namespace(path=str(folder / f"predictions-{split}.csv")))
        return [*callbacks, writer]

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # last.ckpt after the best checkpoint of the same validation: the ModelCheckpoint state it holds
        # then names the current best file (saved before it, an older best could since be deleted).
        lasts = [callback for callback in trainer.callbacks if isinstance(callback, LastCheckpoint)]
        trainer.callbacks[:] = [callback for callback in trainer.callbacks if callback not in lasts] + lasts
        return trainer

    def logged_hparams(self) -> dict[str, Any]:
        sweep = self.config[self.subcommand].get("log_hparams") or {}
        return {**readable_hparams(self.model), **{readable_key(key): value for key, value in sweep.items()}}

    def before_fit(self) -> None:
        for logger in self.trainer.loggers:  # TensorBoard: hparams.yaml; MLflow: the run's parameters
            logger.log_hyperparams(self.logged_hparams())

    def after_fit(self) -> None:
        config = self.config[self.subcommand]
        trainer, model, datamodule = self.trainer, self.model, self.datamodule
        train_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        checkpoint = next((cb for cb in trainer.checkpoint_callbacks if not isinstance(cb, LastCheckpoint)), None)
        best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
        # Read before validate/test: loading a checkpoint restores the callbacks' older state.
        last = next((cb.best_model_path for cb in trainer.checkpoint_callbacks if isinstance(cb, LastCheckpoint)), None)
        last = last or None
        results: dict[str, Any] = {"train": train_metrics}
        if config.test_after_fit:
            # fast_dev_run saves no checkpoint: then the weights in memory are evaluated.
            results["val"] = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
            results["test"] = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
        log_dir = run_folder(trainer)
        record = {
            "experiment": config.experiment_name,
            "config": [str(path) for path in config.get("config") or []],
            "seed": config.seed_everything,
            "wall_time_s": round(time.perf_counter() - self.started, 3),
            "global_step": trainer.global_step,
            "epochs": trainer.current_epoch,
            "checkpoints": {key: str(Path(path).resolve()) if path else None for key, path in (("best", best), ("last", last))},
            "versions": library_versions(),
            **results,
        }
        if trainer.is_global_zero:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
            # Test first, metrics before the loss: TensorBoard's HParams table shows the first five as columns.
            final = {f"{stage}/{k.split('/', 1)[-1]}": v for stage in ("test", "val")
                     for k, v in sorted(results.get(stage, {}).items(), key=lambda item: item[0].endswith("/loss"))}
            final_metrics = {f"final_{k}": v for k, v in final.items()}
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):  # the HParams tab pairs them with the hyperparameters
                    logger.log_hyperparams(self.logged_hparams(), final_metrics)
                elif final_metrics:  # the others got the hyperparameters at fit start; metrics through their own API
                    logger.log_metrics(final_metrics, step=trainer.global_step)
                logger.finalize("success")  # close the files now, not at interpreter exit
            summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(final.items()))
            print(f"\n{config.experiment_name}: {summary}\nrun directory: {log_dir}\nmetrics: {log_dir / 'metrics.json'}")
            if any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers):
                print(f"TensorBoard: tensorboard --logdir {log_dir} --host 127.0.0.1")


def newest_last_checkpoint(experiment: str, root: str | Path = LOG_ROOT) -> tuple[str | None, int | None]:
    """``fit --ckpt_path last``: the ``last.ckpt`` of the newest ``<root>/<experiment>/version_N`` that
    has one, and N, so that the resumed run logs and checkpoints into the same folder. Without one,
    the run starts from scratch (as Lightning does for ``last``), which suits requeued cluster jobs."""
    runs = [(version, folder / "checkpoints" / "last.ckpt") for version, folder in run_folders(experiment, root).items()
            if (folder / "checkpoints" / "last.ckpt").is_file()]
    if not runs:
        print(f"--ckpt_path last: no {root}/{experiment}/version_*/checkpoints/last.ckpt yet; starting from scratch.",
              file=sys.stderr)
        return None, None
    version, path = max(runs)
    print(f"--ckpt_path last: resuming from {path}", file=sys.stderr)
    return str(path), version


def instantiate(config: str | Path, *overrides: str) -> tuple[pl.LightningModule, pl.LightningDataModule, pl.Trainer]:
    """Model, datamodule and trainer exactly as ``scripts/train.py fit --config CONFIG`` builds them
    (without the SaveConfigCallback, which would write config.yaml into the working directory)."""
    cli = TemplateCLI(args=["--config", str(config), *overrides], run=False, save_config_callback=None)
    return cli.model, cli.datamodule, cli.trainer


SUBCOMMANDS = ("fit", "validate", "test", "predict")


def main(args: list[str] | None = None) -> None:
    """Entry point of ``scripts/train.py``; configuration errors exit with status 2 and one or two lines
    (the full usage stays on ``--help``)."""
    raising = {"exit_on_error": False, **{name: {"exit_on_error": False} for name in SUBCOMMANDS}}
    try:
        TemplateCLI(args=args, parser_kwargs=raising)
    except FloatingPointError as error:  # NonFiniteLossError: say where and why, without a traceback
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except argparse.ArgumentError as error:  # jsonargparse: a bad key, value or config file
        print(f"error: {short_parser_error(str(error))}\n(options: scripts/train.py {sys.argv[1] if len(sys.argv) > 1 else ''} --help)",
              file=sys.stderr)
        raise SystemExit(2) from None
    except MisconfigurationException as error:  # Lightning refusing a Trainer setting
        print(f"error: trainer: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as error:
        cause = config_error_in(error)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


def short_parser_error(message: str) -> str:
    """jsonargparse's nested report (one block per Union member and class) -> the key, the value and the types
    it accepts: ``--data.init_args.batch_size: 'abc' is not valid; expected int or None``."""
    if message.startswith("Problems parsing config"):  # YAML syntax: say which file and where
        where = re.findall(r"line (\d+), column (\d+)", message)
        config = next((arg for flag, arg in zip(sys.argv, sys.argv[1:]) if flag == "--config"), "the config")
        reason = message.splitlines()[0].split(": ", 1)[-1]
        return f"{config}: not valid YAML ({reason}, line {where[0][0]} column {where[0][1]})" if where else message
    keys = re.findall(r'Parser key "([^"]+)"', message)
    reasons = [reason.strip(" -") for reason in re.findall(r'Parser key "[^"]+":\n\s*\n?(.*)', message)]
    problem = re.search(r"Problem with given class_path '([^']+)':\n\s*(.*)", message)
    if keys and problem and "Parser key" not in problem.group(2):  # the class itself: missing, or it refused
        return f"--{keys[0]}: {problem.group(1)}: {problem.group(2).strip()}"
    nested = re.search(r"NestedArg\(key='([^']+)', val='(.*)'\)", message)  # a value inside a class's init_args
    given = re.search(r"Given value: (.*)", message)
    expected = list(dict.fromkeys(re.findall(r"Expected a <class '(?:[\w.]+\.)?(\w+)'>", message)))
    if keys and reasons and not reasons[-1].startswith("Does not validate") and "Parser key" not in reasons[-1]:
        path = keys[0] + "".join(f".init_args.{key}" for key in keys[1:])
        reason = re.sub(r"(collections\.abc|torch\.nn\.modules\.module)\.", "", reasons[-1].split(" Got value:")[0])
        got = nested.group(2) if nested else (given.group(1).strip() if given and "(" not in given.group(1) else None)
        return f"--{path}: {reason}" + (f" (given: {got!r})" if got is not None and got not in reason else "")
    if not keys or not given or not expected:
        return message.strip().splitlines()[0] if message.strip() else "invalid arguments"
    path, value = (f"{keys[0]}.init_args.{nested.group(1)}", nested.group(2)) if nested else (keys[-1], given.group(1).strip())
    names = ["None" if name == "NoneType" else name for name in expected]
    return f"--{path}: {value!r} is not valid; expected {' or '.join(names)}"


def config_error_in(error: BaseException | None) -> ConfigError | None:
    """The ConfigError behind ``error``; jsonargparse wraps errors raised while instantiating."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConfigError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    main()
