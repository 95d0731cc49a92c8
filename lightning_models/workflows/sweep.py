"""Optuna sweeps of any experiment config: processes calling ``study.optimize`` on one storage (docs/sweeps.md).

    python scripts/sweep.py --config configs/iris_mlp_classifier.yaml --space configs/sweeps/iris_mlp_classifier.yaml \\
        --trials 30 --workers 2 --folds 3 -- --trainer.max_epochs 10   # --storage env:NAME: a database
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from lightning_models.checks import ConfigError
from lightning_models.training.hparams import readable_key
from lightning_models.training.run import build
from lightning_models.training.run_folders import LOG_ROOT
from lightning_models.util import quiet_logs
from lightning_models.workflows.crossval import fold_options, why_it_cannot_fold
from lightning_models.workflows.seeds import parse_seeds
from lightning_models.workflows.sweep_workers import (
    CHILD_STORAGE,
    DISTRIBUTIONS,
    StopSignal,
    SweepError,
    SweepSettings,
    distribution,
    masked,
    open_storage,
    open_study,
    requeue,
    watch_workers,
    work,
)

NOT_IN_BEST = {"log_hparams", "ckpt_path", "logger", "enable_progress_bar", "enable_model_summary"}  # what every run got


def check_space(path: Path, keys: set[str]) -> dict:
    """The space file: parameters (config keys -> Optuna distributions) and an objective, checked."""
    try:
        space = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SweepError(f"--space {path}: cannot read it ({str(error).splitlines()[0]})") from None
    if not space.get("parameters"):
        raise SweepError(f"--space {path}: no 'parameters' to sweep")
    for key, spec in space["parameters"].items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
            raise SweepError(f"--space {path}: unknown key {key!r}; closest valid keys: {', '.join(close) or 'none'}")
        if (kind := (spec or {}).get("type")) not in DISTRIBUTIONS:
            raise SweepError(f"--space {path}: {key}: type {kind!r}; expected float, int or categorical")
        try:
            distribution(spec)
        except (TypeError, ValueError) as error:
            raise SweepError(f"--space {path}: {key}: {error}") from None
    return space


def storage_url(given: str | None, folder: Path) -> tuple[str, str]:
    """(the real URL, what sweep.yaml records): a journal file in ``folder`` by default; ``env:NAME`` reads variable NAME."""
    if given is None or given.startswith("journal:"):
        return (given or f"journal:{folder / 'journal.log'}",) * 2
    if given.startswith("env:") and not os.environ.get(given[4:]):
        raise SweepError(f"--storage {given}: the environment variable {given[4:]} is not set")
    if "***" in given:
        raise SweepError(f"--storage {given}: the password is masked; give --storage again (the URL or env:NAME)")
    return (os.environ[given[4:]], given) if given.startswith("env:") else (given, masked(given))


def summarize(settings: SweepSettings, study: optuna.Study, top: int = 10) -> dict[str, int]:
    """Print and write summary.md (the best trials, parameters under HParams' names) and best.yaml (the best's config)."""
    folder, metric, keys = Path(settings.folder), settings.metric, list(settings.space["parameters"])
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    best = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value,
                  reverse=settings.direction == "maximize")[:top]
    over = f"seeds {settings.seeds}" + (f" x {settings.folds} folds" if settings.folds else "")
    header = ["trial", *map(readable_key, keys), f"{metric} (mean)", "std (n)", f"{metric} per run", "run folders"]
    lines = [f"# Sweep {settings.study}", "", f"Trials: {counts}. Objective: {metric} ({settings.direction}), "
             f"mean and sample std over {over}.", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for trial in best:
        per_run, std = trial.user_attrs.get("values_per_run", []), trial.user_attrs.get("std", float("nan"))
        cells = [trial.number, *(v if isinstance(v := trial.params[key], str) else json.dumps(v) for key in keys), f"{trial.value:.6g}",
                 f"{'n/a' if std != std else f'{std:.2g}'} ({len(per_run)})", ", ".join(f"{v:.6g}" for v in per_run),
                 ", ".join(Path(path).name for path in trial.user_attrs.get("run_dirs", []))]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if best:  # the best trial's first run's config, less what the sweep added to every run
        config = yaml.safe_load((Path(best[0].user_attrs["run_dirs"][0]) / "config.yaml").read_text())
        config = {key: value for key, value in config.items() if key not in NOT_IN_BEST}
        config["trainer"] = {key: value for key, value in config["trainer"].items() if key not in NOT_IN_BEST}
        head = f"# Best trial {best[0].number} of sweep {settings.study}: {metric} = {best[0].value:.6g}\n"
        if settings.folds:  # the best values on the ordinary split
            config["data"]["init_args"] = {k: v for k, v in config["data"]["init_args"].items() if k not in ("fold", "folds")}
            head += f"# ({metric} is the mean over {settings.folds} folds; this config trains on the datamodule's own split)\n"
        (folder / "best.yaml").write_text(head + yaml.safe_dump(config, sort_keys=False))
        print(f"\nbest: trial {best[0].number}, {metric} = {best[0].value:.6g}; config: {folder / 'best.yaml'}")
    return counts


def prepare(args: argparse.Namespace, parts: Any, folder: Path) -> SweepSettings:
    """The sweep's settings, every check done before anything is written."""
    config = parts.config
    if args.folds and (reason := why_it_cannot_fold(parts.datamodule)):
        raise SweepError(f"--folds {args.folds}: {reason}")
    space = check_space(Path(args.space), {key for key in config.keys() if not key.startswith(("config", "__"))})
    objective = {"metric": config.checkpoint.monitor or "val/loss",
                 "direction": "maximize" if config.checkpoint.mode == "max" else "minimize", **space.get("objective", {})}
    if objective["direction"] not in ("minimize", "maximize"):
        raise SweepError(f"--space {args.space}: objective direction {objective['direction']!r}; use minimize or maximize")
    if objective["metric"].startswith("test/") and not args.test_objective:
        raise SweepError(f"objective metric {objective['metric']!r}: choosing by the test set leaves no held-out estimate (the "
                         "best trial's test score is then optimistic); use a val/ metric, or --test-objective to do it anyway")
    # The metrics its runs log, callbacks' included (TimeToTarget's): one step and one validation batch, in a temporary folder.
    with tempfile.TemporaryDirectory() as temporary, quiet_logs(warnings_too=True):
        check = build(args.config, *args.extra, *(fold_options(0, args.folds) if args.folds else []), "--trainer.fast_dev_run=1",
                      "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                      f"--trainer.default_root_dir={temporary}")
        check.trainer.fit(check.model, datamodule=check.datamodule)
    metrics = {name for name in check.trainer.callback_metrics if name.split("/")[0] in ("train", "val")}
    metrics |= {name.replace("val/", "test/", 1) for name in metrics if args.test_objective and name.startswith("val/")}
    if objective["metric"] not in metrics:
        raise SweepError(f"objective metric {objective['metric']!r} is never logged by {args.config}; "
                         f"its runs log {', '.join(sorted(metrics))}")
    return SweepSettings(config=args.config, space=space, objective=objective, sampler={"name": "TPESampler", "seed": args.seed},
                         pruner=args.pruner, seeds=args.seeds or [config.seed_everything], folds=args.folds,
                         study=f"{folder.parent.name}/{args.name}", folder=str(folder), experiment=folder.parent.name, extra=args.extra)


def sweep(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise SweepError(f"--config {args.config}: no such file")
    parts = build(args.config, *args.extra)
    folder = Path(LOG_ROOT, parts.config.experiment_name, args.name)
    saved = SweepSettings.read(folder) if (folder / "sweep.yaml").is_file() else None
    if saved is None and args.summary:
        raise SweepError(f"no sweep in {folder}; run it first")
    if saved is not None and not (args.resume or args.summary or args.storage):
        raise SweepError(f"{folder} already holds a sweep: add --resume to continue it, or --name for a new one")
    url, recorded = storage_url(args.storage or (saved.storage if saved else None), folder)
    heartbeat = 0 if url.startswith("journal:") else args.heartbeat  # a journal file has no heartbeats
    if args.storage:
        open_storage(url, heartbeat, args.grace, args.max_retry)  # a bad --storage fails before the config's checks run
    settings = dataclasses.replace(saved if saved and (args.resume or args.summary) else prepare(args, parts, folder),
                                   trials=args.trials, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                                   timeout_s=args.timeout, heartbeat_s=heartbeat, grace_s=args.grace, max_retry=args.max_retry,
                                   storage=recorded, url=url, deadline=time.time() + args.timeout if args.timeout else None)
    study = open_study(settings) if saved or args.storage else None
    if args.summary:
        summarize(settings, study)
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    study = study or open_study(settings, create=True)
    if args.resume:  # trials left running by dead workers fail and are queued again (with heartbeats: the stale ones)
        optuna.storages.fail_stale_trials(study)
        for trial in [] if heartbeat else study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            requeue(study, trial.number, settings, "was left running by a dead worker")
    settings.write()
    started, stop = time.perf_counter(), StopSignal()
    if args.workers == 1:
        work(settings, stop, worker=os.getpid() if args.storage else 0)  # processes joining one database study sample apart
    else:
        watch_workers(settings, study, stop)
    if stop.name:
        print(f"{stop.name}: stopped; the study goes on with its other workers")
        return 0
    print(f"\nsweep {settings.study}: {time.perf_counter() - started:.0f} s")
    return 0 if summarize(settings, study)["complete"] else 1


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--config", required=True)
    add("--space", required=True, help="YAML: parameters (config keys -> distributions) and objective")
    add("--trials", type=int, default=20, help="finished (complete or pruned) trials to reach")
    add("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    add("--workers", type=int, default=1, help="worker processes on this machine")
    add("--gpus-per-worker", type=int, default=1, help="1: a GPU of its own per worker while there are enough; 0: all")
    add("--seed", type=int, default=0, help="seed of the TPE sampler")
    add("--pruner", choices=["median", "none"], default="median")
    add("--seeds", default=None, help="such as 0-4 or 0,2,5-7: each trial trains once per seed, the mean counts")
    add("--folds", type=int, default=0, help="cross-validate each trial over this many folds: the mean counts")
    add("--name", default="sweep", help="the sweep's folder under lightning_logs/<experiment>/")
    add("--test-objective", action="store_true", help="accept a test/ objective (its test score is then optimistic)")
    add("--storage", default=None, help="a database URL (password in ~/.pgpass) or env:NAME; default: a journal file")
    add("--heartbeat", type=int, default=30, help="database: seconds between a running trial's heartbeats (0: none)")
    add("--grace", type=int, default=120, help="database: seconds without a heartbeat before a trial is retried")
    add("--max-retry", type=int, default=2, help="times a trial whose worker died or stopped is queued again")
    add("--resume", action="store_true", help="continue a sweep none of whose workers is alive")
    add("--summary", action="store_true", help="only print the best trials and write best.yaml")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    if args.folds and args.folds < 2:
        raise SweepError(f"--folds {args.folds}: expected an integer of at least 2 (or 0: no folds)")
    if min(args.trials, args.workers) < 1 or min(args.heartbeat, args.max_retry) < 0 or 0 < args.heartbeat >= args.grace:
        raise SweepError(f"--trials {args.trials} --workers {args.workers} --heartbeat {args.heartbeat} --grace {args.grace} "
                         f"--max-retry {args.max_retry}: expected trials, workers >= 1; heartbeat, max-retry >= 0; grace > heartbeat")
    if args.gpus_per_worker not in (0, 1):
        raise SweepError(f"--gpus-per-worker {args.gpus_per_worker}: a trial trains on one device (in-process runs "
                         "refuse more), so expected 1 (a GPU of its own per worker) or 0 (CUDA_VISIBLE_DEVICES as it is)")
    try:
        args.seeds = parse_seeds(args.seeds) if args.seeds else None
    except ValueError as error:
        raise SweepError(f"--{error}") from None
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats and retries, on purpose
    if argv[:1] == ["--worker"]:  # a worker started by watch_workers: its settings in sweep.yaml, its URL in the environment
        with quiet_logs():
            work(SweepSettings.read(argv[1], url=os.environ[CHILD_STORAGE]), StopSignal(), worker=int(argv[2]))
        return 0
    try:
        with quiet_logs():
            return sweep(arguments(argv))
    except ConfigError as error:  # ours, or the config or an option after -- refused by build()
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
