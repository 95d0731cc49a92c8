"""Hyperparameter sweeps with Optuna: many ordinary runs of scripts/train.py's CLI in one study (docs/sweeps.md).

    python scripts/sweep.py --config configs/iris_mlp_classifier.yaml --space configs/sweeps/iris_mlp_classifier.yaml \\
        --trials 30 --workers 2        # --resume: continue a killed sweep; --summary: best trials and best.yaml again
    python scripts/sweep.py --config ... --space ... --folds 3   # each trial's objective: the mean over 3 folds
    python scripts/sweep.py --config ... --space ... --storage env:OPTUNA_STORAGE -- --trainer.max_epochs 10
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import yaml

from lightning_models.checks import ConfigError
from lightning_models.training.run import build
from lightning_models.training.run_folders import LOG_ROOT
from lightning_models.workflows.crossval import fold_options, why_it_cannot_fold
from lightning_models.workflows.seeds import parse_seeds
from lightning_models.workflows.sweep_report import summarize
from lightning_models.workflows.sweep_settings import OPTUNA_VERSION, SweepError, SweepSettings
from lightning_models.workflows.sweep_space import check_space
from lightning_models.workflows.sweep_storage import open_storage, open_study, storage_url
from lightning_models.workflows.sweep_workers import CHILD_STORAGE, StopSignal, resume, watch_workers, work


def prepare(args: argparse.Namespace, folder: Path) -> SweepSettings:
    """Check everything and return the sweep's settings (sweep.yaml), before anything is written."""
    parts = build(args.config, *args.extra)
    config = parts.config
    if args.folds and (reason := why_it_cannot_fold(parts.datamodule)):
        raise SweepError(f"--folds {args.folds}: {reason}")
    space = check_space(Path(args.space), {key for key in config.keys() if not key.startswith(("config", "__"))})
    objective = {"metric": config.checkpoint.monitor or "val/loss",
                 "direction": "maximize" if config.checkpoint.mode == "max" else "minimize", **space.get("objective", {})}
    if objective["direction"] not in ("minimize", "maximize"):
        raise SweepError(f"--space {args.space}: objective direction {objective['direction']!r}; use minimize or maximize")
    # the metrics its runs log: one step and one validation batch, the trainer's files in a temporary folder (paths
    # resolve as in the trials: a config's relative to its file, options' to the working folder)
    with tempfile.TemporaryDirectory() as temporary, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Panel callbacks draw to TensorBoard only")  # fast_dev_run: a dummy logger
        folding = fold_options(0, args.folds) if args.folds else []
        parts = build(args.config, *args.extra, *folding, "--trainer.fast_dev_run=1",
                      "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                      f"--trainer.default_root_dir={temporary}")
        parts.trainer.fit(parts.model, datamodule=parts.datamodule)
    metrics = {name for name in parts.trainer.callback_metrics if name.split("/")[0] in ("train", "val")}
    if objective["metric"].startswith("test/") and not args.test_objective:
        raise SweepError(f"objective metric {objective['metric']!r}: choosing by the test set leaves no held-out estimate (the "
                         "best trial's test score is then optimistic); use a val/ metric, or --test-objective to do it anyway")
    metrics |= {name.replace("val/", "test/", 1) for name in metrics if args.test_objective and name.startswith("val/")}
    if objective["metric"] not in metrics:
        raise SweepError(f"objective metric {objective['metric']!r} is never logged by {args.config}; "
                         f"its runs log {', '.join(sorted(metrics))}")
    return SweepSettings(config=args.config, space=space, objective=objective, sampler={"name": "TPESampler", "seed": args.seed},
                         pruner=args.pruner, seeds=parse_seeds(args.seeds) if args.seeds else [config.seed_everything],
                         folds=args.folds, study=f"{folder.parent.name}/{args.name}", folder=str(folder),
                         experiment=folder.parent.name, extra=args.extra, optuna=OPTUNA_VERSION)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats and retries, on purpose
    if argv[:1] == ["--worker"]:  # a worker process started by sweep(): its settings in sweep.yaml, its URL in the environment
        work(SweepSettings.read(argv[1], url=os.environ[CHILD_STORAGE]), StopSignal(), worker=int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--config", required=True, help="the experiment config to sweep")
    add("--space", required=True, help="YAML: parameters (CLI keys -> distributions) and objective")
    add("--trials", type=int, default=20, help="finished (complete or pruned) trials to reach")
    add("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    add("--workers", type=int, default=1, help="worker processes on this machine sharing the study")
    add("--gpus-per-worker", type=int, default=1, help="with --workers 2+ on a GPU machine: each worker sees this many "
        "GPUs (CUDA_VISIBLE_DEVICES), its own while there are enough; 0: every worker sees them all")
    add("--seed", type=int, default=0, help="seed of the TPE sampler")
    add("--pruner", choices=["median", "none"], default="median", help="stop unpromising trials early")
    add("--seeds", default=None, help="seeds such as 0-4 or 0,2,5-7: each trial trains once per seed, the mean counts")
    add("--folds", type=int, default=0, help="cross-validate each trial over this many folds (at least 2): the mean counts")
    add("--name", default="sweep", help="the sweep's folder under lightning_logs/<experiment>/")
    add("--test-objective", action="store_true", help="accept a test/ objective metric: the test set then picks the trial, "
        "so its test score is no longer an unbiased estimate (usually wrong: use val/)")
    add("--storage", default=None, help="a database URL (postgresql+psycopg://user@host/db; password in ~/.pgpass) or env:NAME")
    add("--heartbeat", type=int, default=30, help="database storage: seconds between a running trial's heartbeats (0: none)")
    add("--grace", type=int, default=120, help="database storage: seconds without a heartbeat after which a trial is failed and retried")
    add("--max-retry", type=int, default=2, help="times one trial's values are queued again after its worker died or stopped")
    add("--resume", action="store_true", help="continue a sweep none of whose workers is alive: its running trials are run again")
    add("--summary", action="store_true", help="only print the best trials and write best.yaml")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    try:
        if args.folds and args.folds < 2:
            raise SweepError(f"--folds {args.folds}: expected an integer of at least 2 (or 0: no folds)")
        if min(args.trials, args.workers) < 1 or min(args.heartbeat, args.max_retry) < 0 or 0 < args.heartbeat >= args.grace:
            raise SweepError(f"--trials {args.trials} --workers {args.workers} --heartbeat {args.heartbeat} --grace {args.grace} "
                             f"--max-retry {args.max_retry}: expected trials, workers >= 1; heartbeat, max-retry >= 0; grace > heartbeat")
        if args.gpus_per_worker not in (0, 1):
            raise SweepError(f"--gpus-per-worker {args.gpus_per_worker}: a trial trains on one device (in-process runs "
                             "refuse more), so expected 1 (a GPU of its own per worker) or 0 (CUDA_VISIBLE_DEVICES as it is)")
        try:
            parse_seeds(args.seeds or "0")
        except ValueError as error:
            raise SweepError(f"--{error}") from None
        return sweep(args)
    except (SweepError, ConfigError) as error:  # ConfigError: the config or an option after -- refused by build()
        print(f"error: {error}", file=sys.stderr)
        return 2


def sweep(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise SweepError(f"--config {args.config}: no such file")
    config = yaml.safe_load(Path(args.config).read_text()) or {}  # the study's name and folder follow the config file alone
    folder = Path(LOG_ROOT, config.get("experiment_name") or Path(args.config).stem, args.name)
    saved = SweepSettings.read(folder) if (folder / "sweep.yaml").is_file() else None
    if saved is None and args.summary:
        raise SweepError(f"no sweep in {folder}; run it first")
    if saved is not None and not (args.resume or args.summary or args.storage):
        raise SweepError(f"{folder} already holds a sweep: add --resume to continue it, or --name for a new one")
    url, recorded = storage_url(args.storage or (saved.storage if saved else None), folder)
    heartbeat = 0 if url.startswith("journal:") else args.heartbeat  # a journal file has no heartbeats
    if args.storage:
        open_storage(url, heartbeat, args.grace, args.max_retry)  # a bad --storage fails before the config's checks run
    settings = dataclasses.replace(saved if saved and (args.resume or args.summary) else prepare(args, folder),  # resumed: same space
                                   trials=args.trials, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                                   timeout_s=args.timeout, heartbeat_s=heartbeat,
                                   grace_s=args.grace, max_retry=args.max_retry, storage=recorded, url=url)
    study = open_study(settings, create=False) if saved or args.storage else None  # checks --storage before writing
    if args.summary:
        summarize(settings, study)
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    study = study or open_study(settings, create=True)
    if args.resume:
        resume(study, settings)
    settings.deadline = time.time() + args.timeout if args.timeout else None
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


if __name__ == "__main__":
    raise SystemExit(main())
