"""The template's LightningCLI: ``python scripts/train.py fit --config configs/<experiment>.yaml``."""

from __future__ import annotations

import argparse
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
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_models.checkpoints import LastCheckpoint
from lightning_models.checks import ConfigError

LOG_ROOT = "lightning_logs"


def no_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")  # Lightning's cloud-service adverts


def quiet_third_party() -> None:
    """Silence exactly the third-party noise of a normal run: Lightning's advertising tips and the
    deprecation warning its own ``_pytree`` helper triggers in torch. Everything else still shows."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
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


class TemplateCLI(LightningCLI):
    """LightningCLI with the template's defaults.

    - models and datamodules are chosen by class path (``--model my_pkg.MyModule``); the
      datamodule's ``num_features``/``num_outputs`` are linked into the model's arguments;
    - TensorBoard logs under ``lightning_logs/<experiment_name>/version_N``;
    - a ``checkpoint`` group (ModelCheckpoint): best by ``val/loss``; ``checkpoints/last.ckpt`` after
      every validation (``--last_checkpoint false`` turns it off);
    - after ``fit``, the best checkpoint is validated and tested (``--test_after_fit false``
      skips it) and ``metrics.json`` is written into the run's log directory.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        quiet_third_party()
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
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
        if config.get("last_checkpoint", True) and not any("LastCheckpoint" in str(c.class_path) for c in callbacks):
            callbacks = [*callbacks, Namespace(class_path="lightning_models.checkpoints.LastCheckpoint")]
        config.trainer.callbacks = callbacks
        version = None
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            config.ckpt_path, version = newest_last_checkpoint(config.experiment_name)
        if config.trainer.logger in (None, True):
            config.trainer.logger = Namespace(
                class_path="pytorch_lightning.loggers.TensorBoardLogger",
                init_args=Namespace(save_dir=LOG_ROOT, name=config.experiment_name, default_hp_metric=False,
                                    version=version),
            )

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # last.ckpt after the best checkpoint of the same validation: the ModelCheckpoint state it holds
        # then names the current best file (saved before it, an older best could since be deleted).
        lasts = [callback for callback in trainer.callbacks if isinstance(callback, LastCheckpoint)]
        trainer.callbacks[:] = [callback for callback in trainer.callbacks if callback not in lasts] + lasts
        return trainer

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
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
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
            final = {f"{stage}/{k.split('/', 1)[-1]}": v for stage in ("val", "test")
                     for k, v in results.get(stage, {}).items()}
            hparams = {**model.hparams, **(config.get("log_hparams") or {})}
            final_metrics = {f"final_{k}": v for k, v in final.items()}
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):  # the HParams tab pairs them with the hyperparameters
                    logger.log_hyperparams(hparams, final_metrics)
                elif final_metrics:  # Logger.log_hyperparams takes no metrics: every other logger gets them as metrics
                    logger.log_hyperparams(hparams)
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
    runs = []
    for path in Path(root, experiment).glob("version_*/checkpoints/last.ckpt"):
        suffix = path.parents[1].name.removeprefix("version_")
        if suffix.isdigit():
            runs.append((int(suffix), path))
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
