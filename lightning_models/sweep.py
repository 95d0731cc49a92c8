"""Hyperparameter sweeps with Optuna: many ordinary runs of scripts/train.py's CLI in one study.

    python scripts/sweep.py --config configs/iris_mlp_classifier.yaml --space configs/sweeps/iris_mlp_classifier.yaml \\
        --trials 30 --workers 2
    python scripts/sweep.py --config ... --space ... --trials 30 --resume        # continue a killed sweep
    python scripts/sweep.py --config ... --space ... --summary                   # best trials and best.yaml again
    python scripts/sweep.py --config ... --space ... --storage postgresql://user:pw@host/db   # many machines, one study
    python scripts/sweep.py --config ... --space ... -- --trainer.max_epochs 10  # after --: options for every trial

The space file maps CLI keys (as on train.py's command line) to distributions and names the objective
(default: the config's checkpoint monitor and mode):

    objective: {metric: val/loss, direction: minimize}
    parameters:
      model.init_args.optimizer.init_args.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
      model.init_args.net.init_args.hidden_sizes: {type: categorical, choices: [[8], [16], [32]]}
      data.init_args.batch_size: {type: int, low: 8, high: 64, log: true}

Everything goes to lightning_logs/<experiment>/<name>/: sweep.yaml (this sweep's settings and space),
journal.log (the Optuna study, unless --storage), one run folder per trial (trial_<n>, or
trial_<n>_seed_<s> with --seeds), workers' logs, summary.md and best.yaml (the best trial's full config;
`scripts/train.py fit --config best.yaml` trains it again).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import yaml
from optuna.trial import TrialState

from lightning_models import build, run
from lightning_models.run_folders import LOG_ROOT

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TYPES = {"float", "int", "categorical"}


class SweepError(Exception):
    """Bad sweep input: printed as one line, exit status 2, nothing written."""


class OptunaPruning(pl.Callback):
    """Reports the objective to the trial after every validation; stops the run when the pruner says so
    (after logging the trial's values to TensorBoard's HParams tab, so pruned trials show there too)."""

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


def check_space(path: Path, keys: set[str]) -> dict:
    """The space file, checked: known keys, sound distributions, an objective."""
    if not path.is_file():
        raise SweepError(f"--space {path}: no such file")
    try:
        space = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SweepError(f"--space {path}: not valid YAML ({str(error).splitlines()[0]})") from None
    parameters = space.get("parameters") or {}
    if not parameters:
        raise SweepError(f"--space {path}: no 'parameters' to sweep")
    for key, spec in parameters.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
            raise SweepError(f"--space {path}: unknown key {key!r}; closest valid keys: {', '.join(close) or 'none'}")
        kind = (spec or {}).get("type")
        if kind not in TYPES:
            raise SweepError(f"--space {path}: {key}: type {kind!r}; expected one of {sorted(TYPES)}")
        if kind == "categorical":
            if not spec.get("choices"):
                raise SweepError(f"--space {path}: {key}: categorical needs a non-empty 'choices' list")
            continue
        low, high = spec.get("low"), spec.get("high")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low >= high:
            raise SweepError(f"--space {path}: {key}: needs numbers low < high (got low={low!r}, high={high!r})")
        if spec.get("log") and low <= 0:
            raise SweepError(f"--space {path}: {key}: log=true needs low > 0 (got low={low!r})")
    return space


def suggest(trial: optuna.Trial, key: str, spec: dict) -> Any:
    if spec["type"] == "categorical":  # Optuna stores plain values only: lists travel as JSON strings
        choices = [json.dumps(choice) for choice in spec["choices"]]
        return json.loads(trial.suggest_categorical(key, choices))
    suggest_number = trial.suggest_int if spec["type"] == "int" else trial.suggest_float
    return suggest_number(key, spec["low"], spec["high"], log=bool(spec.get("log")))


def logged_metrics(config: str, extra: list[str]) -> set[str]:
    """Names of the train/ and val/ metrics the config's runs log: one step and one validation batch,
    in a temporary folder (nothing is written here)."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Panel callbacks draw to TensorBoard only")  # no logger here, on purpose
        os.chdir(folder)
        try:
            parts = build(Path(cwd, config), *extra, "--trainer.fast_dev_run=1", "--trainer.logger=false",
                          "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")
            parts.trainer.fit(parts.model, datamodule=parts.datamodule)
        finally:
            os.chdir(cwd)
    return {name for name in parts.trainer.callback_metrics if name.split("/")[0] in ("train", "val")}


def prepare(args: argparse.Namespace) -> dict:
    """Check everything and return the sweep's settings (sweep.yaml), before anything is written."""
    if not Path(args.config).is_file():
        raise SweepError(f"--config {args.config}: no such file")
    config = build(args.config, *args.extra).config
    keys = {key for key in config.keys() if not key.startswith(("config", "__"))}
    space = check_space(Path(args.space), keys)
    objective = {"metric": config.checkpoint.monitor or "val/loss",
                 "direction": "maximize" if config.checkpoint.mode == "max" else "minimize", **space.get("objective", {})}
    if objective["direction"] not in ("minimize", "maximize"):
        raise SweepError(f"--space {args.space}: objective direction {objective['direction']!r}; use minimize or maximize")
    metrics = logged_metrics(args.config, args.extra)
    if objective["metric"] not in metrics:
        raise SweepError(f"objective metric {objective['metric']!r} is never logged by {args.config}; "
                         f"its runs log {', '.join(sorted(metrics))}")
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [config.seed_everything]
    folder = sweep_folder(args)
    experiment = folder.parent.name  # the study's name and the trials' folder follow the config file alone
    return {"config": args.config, "space": space, "objective": objective, "trials": args.trials,
            "timeout_s": args.timeout, "workers": args.workers, "sampler": {"name": "TPESampler", "seed": args.seed},
            "pruner": args.pruner, "seeds": seeds, "storage": args.storage or f"journal:{folder / 'journal.log'}",
            "study": f"{experiment}/{args.name}", "folder": str(folder), "experiment": experiment,
            "extra": args.extra, "optuna": optuna.__version__}


def sweep_folder(args: argparse.Namespace) -> Path:
    if not Path(args.config).is_file():
        raise SweepError(f"--config {args.config}: no such file")
    experiment = (yaml.safe_load(Path(args.config).read_text()) or {}).get("experiment_name") or Path(args.config).stem
    return Path(LOG_ROOT, experiment, args.name)


def storage_of(settings: dict) -> optuna.storages.BaseStorage:
    url = settings["storage"]
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # sqlalchemy's errors: unreachable server, bad URL, missing driver
        raise SweepError(f"--storage {url}: cannot use it ({str(error).splitlines()[0]})") from None


def open_study(settings: dict, create: bool, worker: int = 0) -> optuna.Study:
    pruner = optuna.pruners.MedianPruner() if settings["pruner"] == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=storage_of(settings), study_name=settings["study"], pruner=pruner,
                                direction=settings["objective"]["direction"], load_if_exists=not create)
    # The sampler's seed: --seed for a fresh sweep's first worker; other workers and resumed sweeps must
    # not replay the same random start, so their seed moves with the worker and the trials already there.
    study.sampler = optuna.samplers.TPESampler(seed=settings["sampler"]["seed"] + 1000 * worker + len(study.trials))
    return study


def run_trial(trial: optuna.Trial, settings: dict) -> float:
    """One trial: the config with the trial's values, once per seed, as ordinary train.py runs."""
    values = {key: suggest(trial, key, spec) for key, spec in settings["space"]["parameters"].items()}
    metric = settings["objective"]["metric"]
    results, run_dirs = [], []
    for index, seed in enumerate(settings["seeds"]):
        version = f"trial_{trial.number}" + (f"_seed_{seed}" if len(settings["seeds"]) > 1 else "")
        logger = {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                  "init_args": {"save_dir": LOG_ROOT, "name": str(Path(settings["folder"]).relative_to(LOG_ROOT)),
                                "version": version, "default_hp_metric": False}}
        options = [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in values.items()]
        args = [settings["config"], *settings["extra"], f"--seed_everything={seed}", *options,
                f"--trainer.logger={json.dumps(logger)}",
                f"--log_hparams={json.dumps({**values, 'seed': seed})}", "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false"]
        pruning = [OptunaPruning(trial, metric, {**values, "seed": seed})] if index == 0 and metric.startswith("val/") else []
        result = run(*args, callbacks=pruning)
        results.append(float(result.metrics[metric.split("/")[0]][metric]))
        run_dirs.append(str(result.folder))
    trial.set_user_attr("run_dirs", run_dirs)
    trial.set_user_attr("values_per_seed", results)
    trial.set_user_attr("std", statistics.pstdev(results))
    return statistics.fmean(results)


def work(settings: dict, worker: int = 0) -> None:
    """Run trials until the study holds ``trials`` finished or running ones, or the deadline passes."""
    study, failures, deadline = open_study(settings, create=False, worker=worker), 0, settings.get("deadline")
    if settings["workers"] > 1:  # share the cores: oversubscribed intra-op threads cost more than they give
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings["workers"]))
    while deadline is None or time.time() < deadline:
        live = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        if len(live) >= settings["trials"] or failures > settings["trials"]:
            return
        trial = study.ask()
        ahead = [t for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)) if t.number < trial.number]
        if len(ahead) >= settings["trials"]:  # another worker took the last place meanwhile
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            return
        try:
            value = run_trial(trial, settings)
            study.tell(trial, value)
            print(f"trial {trial.number}: {settings['objective']['metric']} = {value:.6g}", flush=True)
        except optuna.TrialPruned as pruned:
            study.tell(trial, state=TrialState.PRUNED)
            print(f"trial {trial.number}: {pruned}", flush=True)
        except Exception as error:  # a diverging run, say: the trial fails, the sweep goes on
            print(f"trial {trial.number} failed: {error}", file=sys.stderr, flush=True)
            study.tell(trial, state=TrialState.FAIL)
            failures += 1
        except SystemExit:  # the CLI refused the trial's options (printed above): every trial would fail
            study.tell(trial, state=TrialState.FAIL)
            raise


def resume(study: optuna.Study, retry_failed: bool) -> None:
    """Trials left running by dead workers fail; with ``retry_failed`` failed trials are queued again."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        print(f"trial {trial.number} was left running by a dead worker: marked failed")
    if retry_failed:
        retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number not in retried and not trial.user_attrs.get("surplus") and trial.params:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def summarize(settings: dict, study: optuna.Study, top: int = 10) -> None:
    """Print and write summary.md (the best trials) and best.yaml (the best trial's full config)."""
    folder = Path(settings["folder"])
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    reverse = settings["objective"]["direction"] == "maximize"
    best = sorted(done, key=lambda t: t.value, reverse=reverse)[:top]
    metric = settings["objective"]["metric"]
    keys = list(settings["space"]["parameters"])
    lines = [f"# Sweep {settings['study']}", "", f"Trials: {counts}. Objective: {metric} ({settings['objective']['direction']}), "
             f"mean over seeds {settings['seeds']}.", "", "| trial | " + " | ".join(keys) + f" | {metric} | std | run folder |",
             "|" + " --- |" * (len(keys) + 4)]
    for trial in best:
        params = [json.dumps(suggested(trial, key)) for key in keys]
        lines.append(f"| {trial.number} | " + " | ".join(params) + f" | {trial.value:.6g} | {trial.user_attrs.get('std', 0):.2g} | "
                     f"{trial.user_attrs['run_dirs'][0]} |")
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if best:
        config = yaml.safe_load((Path(best[0].user_attrs["run_dirs"][0]) / "config.yaml").read_text())
        for key in ("log_hparams", "ckpt_path"):
            config.pop(key, None)
        for key in ("logger", "enable_progress_bar", "enable_model_summary"):
            config["trainer"].pop(key, None)
        header = f"# Best trial {best[0].number} of sweep {settings['study']}: {metric} = {best[0].value:.6g}\n"
        (folder / "best.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
        print(f"\nbest: trial {best[0].number}, {metric} = {best[0].value:.6g}; config: {folder / 'best.yaml'}")


def suggested(trial: optuna.trial.FrozenTrial, key: str) -> Any:
    value = trial.params[key]
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{\"" else value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended")  # in-process runs, on purpose
    if argv[:1] == ["--worker"]:  # a worker process started by sweep(): everything is in sweep.yaml
        work(yaml.safe_load(Path(argv[1], "sweep.yaml").read_text()), worker=int(argv[2]))
        return 0
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the experiment config to sweep")
    parser.add_argument("--space", required=True, help="YAML: parameters (CLI keys -> distributions) and objective")
    parser.add_argument("--trials", type=int, default=20, help="finished (complete or pruned) trials to reach")
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine sharing the study")
    parser.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    parser.add_argument("--pruner", choices=["median", "none"], default="median", help="stop unpromising trials early")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds: each trial trains once per seed, the mean counts")
    parser.add_argument("--name", default="sweep", help="the sweep's folder under lightning_logs/<experiment>/")
    parser.add_argument("--storage", default=None, help="an Optuna RDB URL (e.g. PostgreSQL) shared by many machines")
    parser.add_argument("--resume", action="store_true",
                        help="continue a sweep none of whose workers is alive: its running trials are marked failed")
    parser.add_argument("--retry-failed", action="store_true", help="with --resume: queue failed trials again")
    parser.add_argument("--summary", action="store_true", help="only print the best trials and write best.yaml")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = extra
    try:
        if args.trials < 1 or args.workers < 1:
            raise SweepError(f"--trials {args.trials} / --workers {args.workers}: both must be at least 1")
        if args.seeds and not all(part.strip().lstrip("-").isdigit() for part in args.seeds.split(",")):
            raise SweepError(f"--seeds {args.seeds!r}: expected comma-separated integers such as 0,1,2")
        return sweep(args)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def sweep(args: argparse.Namespace) -> int:
    folder = sweep_folder(args)
    saved = yaml.safe_load((folder / "sweep.yaml").read_text()) if (folder / "sweep.yaml").is_file() else None
    if args.summary:
        if saved is None:
            raise SweepError(f"no sweep in {folder}; run it first")
        summarize(saved, open_study(saved, create=False))
        return 0
    if saved is not None and not args.resume and not args.storage:
        raise SweepError(f"{folder} already holds a sweep: add --resume to continue it, or --name for a new one")
    settings = prepare(args)
    if saved is not None:  # a resumed sweep keeps its space, objective, sampler and seeds
        settings = {**saved, "trials": args.trials, "workers": args.workers, "timeout_s": args.timeout}
    study = open_study(settings, create=False) if saved or args.storage else None  # checks --storage before writing
    folder.mkdir(parents=True, exist_ok=True)
    if study is None:
        study = open_study(settings, create=True)
    if args.resume:
        resume(study, args.retry_failed)
    settings["deadline"] = time.time() + args.timeout if args.timeout else None
    (folder / "sweep.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    started = time.perf_counter()
    if args.workers == 1:
        work(settings)
    else:
        watch_workers(settings, study)
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    print(f"\nsweep {settings['study']}: {counts} in {time.perf_counter() - started:.0f} s")
    summarize(settings, study)
    return 0 if counts["complete"] else 1


def watch_workers(settings: dict, study: optuna.Study) -> None:
    """Start ``workers`` processes on the study (their output: worker_<i>.log) and show their progress."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    folder, workers = Path(settings["folder"]), []
    for index in range(settings["workers"]):
        with open(folder / f"worker_{index}.log", "a") as log:  # the child keeps its own copy of the handle
            command = [sys.executable, "-m", "lightning_models.sweep", "--worker", str(folder), str(index)]
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns) as progress:
        task = progress.add_task(f"{settings['study']} ({settings['workers']} workers)", total=settings["trials"])
        while any(worker.poll() is None for worker in workers):
            progress.update(task, completed=len(study.get_trials(deepcopy=False, states=FINISHED)))
            time.sleep(1)
        progress.update(task, completed=len(study.get_trials(deepcopy=False, states=FINISHED)))
    for index, worker in enumerate(workers):
        if worker.returncode:
            print(f"worker {index} ended with status {worker.returncode}; see {folder / f'worker_{index}.log'}")


if __name__ == "__main__":
    raise SystemExit(main())
