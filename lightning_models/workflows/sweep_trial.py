"""One trial of a sweep: the config with the trial's values, trained once per seed (and per fold with --folds) as
ordinary scripts/train.py runs in the sweep's folder; the objective is their mean, and the first run reports to the
trial after every validation so that the pruner can stop it early."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl

from lightning_models.training.run import run
from lightning_models.training.run_folders import named_run_options
from lightning_models.workflows.crossval import fold_options
from lightning_models.workflows.seeds import seed_options
from lightning_models.workflows.sweep_settings import SweepSettings
from lightning_models.workflows.sweep_space import suggest


class OptunaPruning(pl.Callback):
    """Reports the objective to the trial after every validation; stops the run when the pruner says so (HParams shows it)."""

    # Not optuna_integration's PyTorchLightningPruningCallback: it imports lightning.pytorch, whose callbacks a
    # pytorch_lightning Trainer refuses (the two packages do not mix).

    def __init__(self, trial: optuna.Trial, metric: str, values: dict[str, Any]) -> None:
        self.trial, self.metric, self.values = trial, metric, values

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.metric])
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            if trainer.logger is not None:
                trainer.logger.log_hyperparams(self.values, {f"final_{self.metric}": value})
                trainer.logger.finalize("success")
            raise optuna.TrialPruned(f"pruned after epoch {trainer.current_epoch}: {self.metric}={value:.4g}")


def run_trial(trial: optuna.Trial, settings: SweepSettings) -> float:
    """One trial: the config with the trial's values, once per seed (and per fold with --folds), as ordinary train.py runs."""
    values = {key: suggest(trial, key, spec) for key, spec in settings.space["parameters"].items()}
    metric, results, run_dirs, folds = settings.metric, [], [], settings.folds
    runs = [(seed, fold) for seed in settings.seeds for fold in (range(folds) if folds else [None])]
    for index, (seed, fold) in enumerate(runs):
        version = (f"trial_{trial.number}" + (f"_seed_{seed}" if len(settings.seeds) > 1 else "")
                   + (f"_fold_{fold}" if fold is not None else ""))
        options = [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in values.items()]
        hparams = {**values, "seed": seed, **({"fold": fold} if folds else {})}
        args = [settings.config, *settings.extra, *(fold_options(fold, folds) if folds else []), *seed_options(seed),
                *options, *named_run_options(Path(settings.folder, version), hparams)]
        pruning = [OptunaPruning(trial, metric, hparams)] if index == 0 and metric.startswith("val/") else []
        result = run(*args, callbacks=pruning)
        results.append(float(result.metrics[metric.split("/")[0]][metric]))
        run_dirs.append(str(result.folder))
    spread = statistics.stdev(results) if len(results) > 1 else 0.0  # sample std (n - 1), as every summary reports
    for key, value in {"run_dirs": run_dirs, "values_per_run": results, "std": spread, "n": len(results)}.items():
        trial.set_user_attr(key, value)
    return statistics.fmean(results)
