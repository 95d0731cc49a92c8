"""What a sweep reports: its best trials as a table (printed and written to summary.md, the parameters under the names
TensorBoard's HParams tab shows) and the best trial's config as best.yaml, ready for scripts/train.py."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from lightning_models.training.hparams import readable_key
from lightning_models.workflows.sweep_settings import SweepSettings


def summarize(settings: SweepSettings, study: optuna.Study, top: int = 10) -> dict[str, int]:
    """Print and write summary.md (the best trials, parameters under HParams' names) and best.yaml (the best trial's config)."""
    folder = Path(settings.folder)
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    best = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value,
                  reverse=settings.direction == "maximize")[:top]
    metric, keys, seeds = settings.metric, list(settings.space["parameters"]), settings.seeds
    over = f"seeds {seeds}" + (f" x {settings.folds} folds" if settings.folds else "")
    header = ["trial", *map(readable_key, keys), f"{metric} (mean)", "std (n)", f"{metric} per run", "run folders"]
    lines = [f"# Sweep {settings.study}", "", f"Trials: {counts}. Objective: {metric} ({settings.direction}), "
             f"mean and sample std over {over}.", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for trial in best:
        cells = [trial.number, *(v if isinstance(v := trial.params[key], str) else json.dumps(v) for key in keys), f"{trial.value:.6g}",
                 f"{trial.user_attrs.get('std', 0):.2g} ({len(trial.user_attrs.get('values_per_run', []))})",
                 ", ".join(f"{v:.6g}" for v in trial.user_attrs.get("values_per_run", [])),
                 ", ".join(Path(path).name for path in trial.user_attrs.get("run_dirs", []))]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if best:
        write_best_config(settings, best[0])
    return counts


def write_best_config(settings: SweepSettings, best: optuna.trial.FrozenTrial) -> None:
    """best.yaml: the config of the best trial's first run, less what the sweep added to every run."""
    folder, metric = Path(settings.folder), settings.metric
    config = yaml.safe_load((Path(best.user_attrs["run_dirs"][0]) / "config.yaml").read_text())
    drop = {"log_hparams", "ckpt_path", "logger", "enable_progress_bar", "enable_model_summary"}  # the sweep's, not the trial's
    config = {key: value for key, value in config.items() if key not in drop}
    config["trainer"] = {key: value for key, value in config["trainer"].items() if key not in drop}
    header = f"# Best trial {best.number} of sweep {settings.study}: {metric} = {best.value:.6g}\n"
    if settings.folds:  # the best values, trained on the ordinary split: one run, not the folds' mean
        config["data"]["init_args"] = {k: v for k, v in config["data"]["init_args"].items() if k not in ("fold", "folds")}
        header += f"# ({metric} is the mean over {settings.folds} folds; this config trains on the datamodule's own split)\n"
    (folder / "best.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    print(f"\nbest: trial {best.number}, {metric} = {best.value:.6g}; config: {folder / 'best.yaml'}")
