"""Hyperparameter sweeps with Optuna: many ordinary runs of scripts/train.py's CLI in one study (docs/sweeps.md).

    python scripts/sweep.py --config configs/iris_mlp_classifier.yaml --space configs/sweeps/iris_mlp_classifier.yaml \\
        --trials 30 --workers 2        # --resume: continue a killed sweep; --summary: best trials and best.yaml again
    python scripts/sweep.py --config ... --space ... --folds 3   # each trial's objective: the mean over 3 folds
    python scripts/sweep.py --config ... --space ... --storage env:OPTUNA_STORAGE -- --trainer.max_epochs 10
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import signal
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
import torch
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError

from lightning_models.training.hparams import readable_key
from lightning_models.training.run import build, run
from lightning_models.training.run_folders import LOG_ROOT, named_run_options
from lightning_models.workflows.crossval import fold_options, why_it_cannot_fold
from lightning_models.workflows.seeds import parse_seeds, seed_options

FINISHED, PLACES = (TrialState.COMPLETE, TrialState.PRUNED), (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
CHILD_STORAGE = "SWEEP_STORAGE_URL"  # the parent hands its workers the storage URL here, never on a command line
STOP: dict[str, Any] = {"signal": None, "trial": None, "children": []}  # a stop signal's name; this process's trial or workers


class SweepError(Exception):
    """Bad sweep input: printed as one line, exit status 2, nothing written."""


class HandBack(Exception):
    """A stop signal arrived during trial ``args[0]``: it goes back to the study. No args: another worker took the last place."""


def on_stop(signum: int, frame: Any) -> None:
    STOP["signal"] = signal.Signals(signum).name
    for child in STOP["children"]:  # the workers of --workers N: each hands its trial back and exits
        child.send_signal(signum)
    trial, STOP["trial"] = STOP["trial"], None  # a trial stops at once (once); elsewhere the worker's loop sees the flag
    if trial is not None:
        raise HandBack(trial)


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


def check_space(path: Path, keys: set[str]) -> dict:
    """The space file, checked: known keys, sound distributions, an objective."""
    try:
        space = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:  # no such file, or not YAML
        raise SweepError(f"--space {path}: cannot read it ({str(error).splitlines()[0]})") from None
    if not space.get("parameters"):
        raise SweepError(f"--space {path}: no 'parameters' to sweep")
    for key, spec in space["parameters"].items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
            raise SweepError(f"--space {path}: unknown key {key!r}; closest valid keys: {', '.join(close) or 'none'}")
        kind, low, high = (spec or {}).get("type"), (spec or {}).get("low"), (spec or {}).get("high")
        if kind not in ("float", "int", "categorical"):
            raise SweepError(f"--space {path}: {key}: type {kind!r}; expected float, int or categorical")
        if kind == "categorical" and not spec.get("choices"):
            raise SweepError(f"--space {path}: {key}: categorical needs a non-empty 'choices' list")
        if kind != "categorical" and not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
            raise SweepError(f"--space {path}: {key}: needs numbers low < high (got low={low!r}, high={high!r})")
        if kind != "categorical" and spec.get("log") and low <= 0:
            raise SweepError(f"--space {path}: {key}: log=true needs low > 0 (got low={low!r})")
    return space


def suggest(trial: optuna.Trial, key: str, spec: dict) -> Any:
    if spec["type"] == "categorical":  # Optuna stores plain values only: lists travel as JSON strings
        return json.loads(trial.suggest_categorical(key, [json.dumps(choice) for choice in spec["choices"]]))
    suggest_number = trial.suggest_int if spec["type"] == "int" else trial.suggest_float
    return suggest_number(key, spec["low"], spec["high"], log=bool(spec.get("log")))


def prepare(args: argparse.Namespace, folder: Path) -> dict:
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
    cwd = os.getcwd()  # the metrics its runs log: one step and one validation batch in a temporary folder
    with tempfile.TemporaryDirectory() as temporary, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Panel callbacks draw to TensorBoard only")  # no logger here, on purpose
        os.chdir(temporary)
        try:
            folding = fold_options(0, args.folds) if args.folds else []
            parts = build(Path(cwd, args.config), *args.extra, *folding, "--trainer.fast_dev_run=1", "--trainer.logger=false",
                          "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")
            parts.trainer.fit(parts.model, datamodule=parts.datamodule)
        finally:
            os.chdir(cwd)
    metrics = {name for name in parts.trainer.callback_metrics if name.split("/")[0] in ("train", "val")}
    if objective["metric"].startswith("test/") and not args.test_objective:
        raise SweepError(f"objective metric {objective['metric']!r}: choosing by the test set leaves no held-out estimate (the "
                         "best trial's test score is then optimistic); use a val/ metric, or --test-objective to do it anyway")
    metrics |= {name.replace("val/", "test/", 1) for name in metrics if args.test_objective and name.startswith("val/")}
    if objective["metric"] not in metrics:
        raise SweepError(f"objective metric {objective['metric']!r} is never logged by {args.config}; "
                         f"its runs log {', '.join(sorted(metrics))}")
    return {"config": args.config, "space": space, "objective": objective, "sampler": {"name": "TPESampler", "seed": args.seed},
            "pruner": args.pruner, "seeds": parse_seeds(args.seeds) if args.seeds else [config.seed_everything], "folds": args.folds,
            "study": f"{folder.parent.name}/{args.name}", "folder": str(folder), "experiment": folder.parent.name,
            "extra": args.extra, "optuna": optuna.__version__}


def masked(url: str) -> str:
    """The URL as it may be written or shown: its password as ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show none of it
        return "(an unreadable URL)"


def storage_url(given: str | None, folder: Path) -> tuple[str, str]:
    """(the real URL, what sweep.yaml records): a journal file in ``folder`` by default; ``env:NAME`` reads the URL
    from variable NAME; a URL without a password leaves it to libpq (PGPASSWORD, ~/.pgpass)."""
    if given is None or given.startswith("journal:"):
        return (given or f"journal:{folder / 'journal.log'}",) * 2
    if given.startswith("env:") and not os.environ.get(given[4:]):
        raise SweepError(f"--storage {given}: the environment variable {given[4:]} is not set")
    if "***" in given:
        raise SweepError(f"--storage {given}: the password is masked; give --storage again (the URL or env:NAME)")
    return (os.environ[given[4:]], given) if given.startswith("env:") else (given, masked(given))


def storage_of(settings: dict) -> optuna.storages.BaseStorage:
    url, beat = settings["url"], settings["heartbeat_s"]
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    retry = RetryHeartbeatStaleTrialCallback(settings["max_retry"])  # the stale trial's values, as a new trial
    for attempt in range(4):  # workers starting together race to create the tables: the losers try again
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=beat or None, grace_period=settings["grace_s"] if beat else None,
                                              heartbeat_stale_trial_callback=retry if beat else None)
        except Exception as error:  # sqlalchemy's errors: unreachable server, bad URL, missing driver, that race
            if attempt == 3 or not isinstance(error, (IntegrityError, ProgrammingError)):
                reason = str(error).splitlines()[0].replace(url, masked(url))
                raise SweepError(f"--storage {masked(url)}: cannot use it ({reason})") from None
            time.sleep(1 + attempt)


def open_study(settings: dict, create: bool, worker: int = 0) -> optuna.Study:
    pruner = optuna.pruners.MedianPruner() if settings["pruner"] == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=storage_of(settings), study_name=settings["study"], pruner=pruner,
                                direction=settings["objective"]["direction"], load_if_exists=not create)
    # --seed for a fresh sweep's first worker; other workers and resumed sweeps move away from its random start
    study.sampler = optuna.samplers.TPESampler(seed=settings["sampler"]["seed"] + 1000 * worker + len(study.trials))
    return study


def run_trial(trial: optuna.Trial, settings: dict) -> float:
    """One trial: the config with the trial's values, once per seed (and per fold with --folds), as ordinary train.py runs."""
    values = {key: suggest(trial, key, spec) for key, spec in settings["space"]["parameters"].items()}
    metric, results, run_dirs, folds = settings["objective"]["metric"], [], [], settings.get("folds", 0)
    runs = [(seed, fold) for seed in settings["seeds"] for fold in (range(folds) if folds else [None])]
    for index, (seed, fold) in enumerate(runs):
        version = (f"trial_{trial.number}" + (f"_seed_{seed}" if len(settings["seeds"]) > 1 else "")
                   + (f"_fold_{fold}" if fold is not None else ""))
        options = [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in values.items()]
        hparams = {**values, "seed": seed, **({"fold": fold} if folds else {})}
        args = [settings["config"], *settings["extra"], *(fold_options(fold, folds) if folds else []), *seed_options(seed),
                *options, *named_run_options(Path(settings["folder"], version), hparams)]
        pruning = [OptunaPruning(trial, metric, hparams)] if index == 0 and metric.startswith("val/") else []
        result = run(*args, callbacks=pruning)
        results.append(float(result.metrics[metric.split("/")[0]][metric]))
        run_dirs.append(str(result.folder))
    spread = statistics.stdev(results) if len(results) > 1 else 0.0  # sample std (n - 1), as every summary reports
    for key, value in {"run_dirs": run_dirs, "values_per_run": results, "std": spread, "n": len(results)}.items():
        trial.set_user_attr(key, value)
    return statistics.fmean(results)


def objective(trial: optuna.Trial, study: optuna.Study, settings: dict) -> float:
    """run_trial, unless the trials ahead of this one (finished, running or queued) fill the study already."""
    ahead = [t for t in study.get_trials(deepcopy=False, states=(*PLACES, TrialState.WAITING)) if t.number < trial.number]
    if len(ahead) >= settings["trials"]:
        trial.set_user_attr("surplus", True)
        raise HandBack
    STOP["trial"] = trial.number
    try:
        if STOP["signal"]:
            raise HandBack(trial.number)
        value = run_trial(trial, settings)
    except Exception as error:
        if not isinstance(error, HandBack):
            print(f"trial {trial.number}: {'' if isinstance(error, optuna.TrialPruned) else 'failed: '}{error}", flush=True)
        raise
    finally:
        STOP["trial"] = None
    print(f"trial {trial.number}: {settings['objective']['metric']} = {value:.6g}", flush=True)
    return value


def work(settings: dict, worker: int = 0) -> None:
    """Run trials until the study holds ``trials`` finished ones (without heartbeats: finished or running), the
    deadline passes or a stop signal arrives. study.optimize runs each trial: it fails stale trials and beats."""
    study, failures, deadline, beat = open_study(settings, False, worker), 0, settings.get("deadline"), settings["heartbeat_s"]
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # objective's own lines say what became of each trial
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, on_stop)
    if settings["workers"] > 1:  # share the cores: oversubscribed intra-op threads cost more than they give
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings["workers"]))
    while not STOP["signal"] and (deadline is None or time.time() < deadline) and failures <= settings["trials"]:
        if beat:
            optuna.storages.fail_stale_trials(study)
        finished, taken = (len(study.get_trials(deepcopy=False, states=states)) for states in (FINISHED, PLACES))
        if finished >= settings["trials"] or (taken >= settings["trials"] and not beat):  # without heartbeats the last
            return  # trials, running elsewhere, end there or --resume fails them
        if taken >= settings["trials"]:  # see whether they end or go stale, a second at a time to heed a stop signal
            for _ in range(beat):
                if STOP["signal"]:
                    break
                time.sleep(1)
            continue
        try:
            study.optimize(lambda trial: objective(trial, study, settings), n_trials=1)
        except HandBack as stopped:  # optimize has marked the trial failed
            if not stopped.args:  # surplus: the places are taken, but a retry queued meanwhile may still need a worker
                continue
            requeue(study, stopped.args[0], settings, f"handed back ({STOP['signal']})")
            return
        except Exception:  # a diverging run, say: the trial fails, the sweep goes on
            failures += 1


def requeue(study: optuna.Study, number: int, settings: dict, why: str) -> None:
    """Trial ``number`` fails (if still running) and goes back to the study with its values, as a new trial."""
    if study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
        study.tell(number, state=TrialState.FAIL)
    if (trial := study.get_trials(deepcopy=False)[number]).params:  # else it never started: a fresh trial takes its place
        RetryHeartbeatStaleTrialCallback(max_retry=settings["max_retry"])(study, trial)
    print(f"trial {number} {why}: queued again", flush=True)


def resume(study: optuna.Study, settings: dict) -> None:
    """Trials left running by dead workers (with heartbeats: those that stopped beating) fail and are queued again."""
    optuna.storages.fail_stale_trials(study)  # with heartbeats; its callback queues them again
    for trial in [] if settings["heartbeat_s"] else study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        requeue(study, trial.number, settings, "was left running by a dead worker")


def summarize(settings: dict, study: optuna.Study, top: int = 10) -> dict[str, int]:
    """Print and write summary.md (the best trials, parameters under HParams' names) and best.yaml (the best trial's config)."""
    folder = Path(settings["folder"])
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    best = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value,
                  reverse=settings["objective"]["direction"] == "maximize")[:top]
    metric, keys, seeds = settings["objective"]["metric"], list(settings["space"]["parameters"]), settings["seeds"]
    over = f"seeds {seeds}" + (f" x {settings['folds']} folds" if settings.get("folds") else "")
    header = ["trial", *map(readable_key, keys), f"{metric} (mean)", "std (n)", f"{metric} per run", "run folders"]
    lines = [f"# Sweep {settings['study']}", "", f"Trials: {counts}. Objective: {metric} ({settings['objective']['direction']}), "
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
        config = yaml.safe_load((Path(best[0].user_attrs["run_dirs"][0]) / "config.yaml").read_text())
        drop = {"log_hparams", "ckpt_path", "logger", "enable_progress_bar", "enable_model_summary"}  # the sweep's, not the trial's
        config = {key: value for key, value in config.items() if key not in drop}
        config["trainer"] = {key: value for key, value in config["trainer"].items() if key not in drop}
        header = f"# Best trial {best[0].number} of sweep {settings['study']}: {metric} = {best[0].value:.6g}\n"
        if settings.get("folds"):  # the best values, trained on the ordinary split: one run, not the folds' mean
            config["data"]["init_args"] = {k: v for k, v in config["data"]["init_args"].items() if k not in ("fold", "folds")}
            header += f"# ({metric} is the mean over {settings['folds']} folds; this config trains on the datamodule's own split)\n"
        (folder / "best.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
        print(f"\nbest: trial {best[0].number}, {metric} = {best[0].value:.6g}; config: {folder / 'best.yaml'}")
    return counts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats and retries, on purpose
    if argv[:1] == ["--worker"]:  # a worker process started by sweep(): its settings in sweep.yaml, its URL in the environment
        work({**yaml.safe_load(Path(argv[1], "sweep.yaml").read_text()), "url": os.environ[CHILD_STORAGE]}, worker=int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--config", required=True, help="the experiment config to sweep")
    add("--space", required=True, help="YAML: parameters (CLI keys -> distributions) and objective")
    add("--trials", type=int, default=20, help="finished (complete or pruned) trials to reach")
    add("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    add("--workers", type=int, default=1, help="worker processes on this machine sharing the study")
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
        try:
            parse_seeds(args.seeds or "0")
        except ValueError as error:
            raise SweepError(f"--{error}") from None
        return sweep(args)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def sweep(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise SweepError(f"--config {args.config}: no such file")
    config = yaml.safe_load(Path(args.config).read_text()) or {}  # the study's name and folder follow the config file alone
    folder = Path(LOG_ROOT, config.get("experiment_name") or Path(args.config).stem, args.name)
    saved = yaml.safe_load((folder / "sweep.yaml").read_text()) if (folder / "sweep.yaml").is_file() else None
    if saved is None and args.summary:
        raise SweepError(f"no sweep in {folder}; run it first")
    if saved is not None and not (args.resume or args.summary or args.storage):
        raise SweepError(f"{folder} already holds a sweep: add --resume to continue it, or --name for a new one")
    url, recorded = storage_url(args.storage or (saved or {}).get("storage"), folder)
    options = {"trials": args.trials, "workers": args.workers, "timeout_s": args.timeout,  # a journal file has no heartbeats
               "heartbeat_s": 0 if url.startswith("journal:") else args.heartbeat,
               "grace_s": args.grace, "max_retry": args.max_retry, "storage": recorded, "url": url}
    if args.storage:
        storage_of(options)  # a bad --storage fails before the config's checks run
    settings = {**(saved if saved and (args.resume or args.summary) else prepare(args, folder)), **options}  # resumed: same space
    study = open_study(settings, create=False) if saved or args.storage else None  # checks --storage before writing
    if args.summary:
        summarize(settings, study)
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    study = study or open_study(settings, create=True)
    if args.resume:
        resume(study, settings)
    settings["deadline"] = time.time() + args.timeout if args.timeout else None
    (folder / "sweep.yaml").write_text(yaml.safe_dump({k: v for k, v in settings.items() if k != "url"}, sort_keys=False))
    started = time.perf_counter()
    if args.workers == 1:
        work(settings, worker=os.getpid() if args.storage else 0)  # processes joining one database study sample apart
    else:
        watch_workers(settings, study)
    if STOP["signal"]:
        print(f"{STOP['signal']}: stopped; the study goes on with its other workers")
        return 0
    print(f"\nsweep {settings['study']}: {time.perf_counter() - started:.0f} s")
    return 0 if summarize(settings, study)["complete"] else 1


def watch_workers(settings: dict, study: optuna.Study) -> None:
    """Start ``workers`` processes on the study (output: worker_<i>.log), print its progress, pass a stop signal on."""
    folder, workers, env, finished = Path(settings["folder"]), [], {**os.environ, CHILD_STORAGE: settings["url"]}, -1
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, on_stop)
    for index in range(settings["workers"]):
        with open(folder / f"worker_{index}.log", "a") as log:  # the child keeps its own copy of the handle
            command = [sys.executable, "-m", "lightning_models.workflows.sweep", "--worker", str(folder), str(index)]
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
    STOP["children"] = workers
    while any(worker.poll() is None for worker in workers):
        if finished < (finished := len(study.get_trials(deepcopy=False, states=FINISHED))):
            print(f"{settings['study']}: {finished} of {settings['trials']} trials finished", flush=True)
        time.sleep(1)
    for index, worker in enumerate(workers):
        if worker.returncode:
            print(f"worker {index} ended with status {worker.returncode}; see {folder / f'worker_{index}.log'}")


if __name__ == "__main__":
    raise SystemExit(main())
