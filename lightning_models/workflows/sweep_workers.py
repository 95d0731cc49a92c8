"""A sweep's processes: each calls ``study.optimize`` on one storage (a journal file, or a database whose stale trials
``RetryHeartbeatStaleTrialCallback`` queues again), one trial at a time, until the study is full."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import torch
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
from optuna.trial import TrialState
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightning_models.checks import ConfigError
from lightning_models.training.run import run
from lightning_models.training.run_folders import named_run_options
from lightning_models.util import mean_spread
from lightning_models.workflows.crossval import fold_options
from lightning_models.workflows.seeds import seed_options

FINISHED, PLACES = (TrialState.COMPLETE, TrialState.PRUNED), (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
CHILD_STORAGE = "SWEEP_STORAGE_URL"  # the parent hands its workers the storage URL here, never on a command line
DISTRIBUTIONS = {"float": FloatDistribution, "int": IntDistribution, "categorical": CategoricalDistribution}


class SweepError(ConfigError):
    """Bad sweep input: printed as one line, exit status 2, nothing written."""


class Stopped(Exception):
    """A stop signal arrived: trial ``args[0]`` goes back to the study. No args: the study's places were taken."""


@dataclass(kw_only=True)
class SweepSettings:
    """What a sweep process needs, as sweep.yaml holds it (``url``, the real storage URL, is never written)."""

    config: str
    space: dict[str, Any]
    objective: dict[str, Any]
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "TPESampler", "seed": 0})
    pruner: str = "median"
    seeds: list[int] = field(default_factory=lambda: [0])
    folds: int = 0
    study: str
    folder: str
    experiment: str = ""
    extra: list[str] = field(default_factory=list)
    optuna: str = optuna.__version__
    trials: int = 20
    workers: int = 1
    gpus_per_worker: int = 1
    timeout_s: float | None = None
    heartbeat_s: int = 30  # 0: none (a journal file)
    grace_s: int = 120
    max_retry: int = 2
    storage: str | None = None  # masked, or env:NAME
    url: str = field(default="", repr=False)
    deadline: float | None = None  # time.time() after which no new trial starts

    metric = property(lambda self: self.objective["metric"])
    direction = property(lambda self: self.objective["direction"])

    @classmethod
    def read(cls, folder: str | Path, url: str = "") -> SweepSettings:
        saved = yaml.safe_load(Path(folder, "sweep.yaml").read_text())
        known = {item.name for item in dataclasses.fields(cls)} - {"url"}
        return cls(**{key: value for key, value in saved.items() if key in known}, url=url)

    def write(self) -> None:
        record = {key: value for key, value in dataclasses.asdict(self).items() if key != "url"}
        Path(self.folder, "sweep.yaml").write_text(yaml.safe_dump(record, sort_keys=False))


def distribution(spec: dict[str, Any]) -> Any:
    """The Optuna distribution of a space entry (``{type: float, low: 0.001, high: 0.1, log: true}``); Optuna stores plain
    values only, so categorical choices travel as JSON strings. Optuna's ValueError or TypeError for bad arguments."""
    args = {key: value for key, value in spec.items() if key != "type"}
    if spec["type"] == "categorical":
        args["choices"] = [json.dumps(choice) for choice in args.get("choices") or []]
    return DISTRIBUTIONS[spec["type"]](**args)


def suggest(trial: optuna.Trial, key: str, spec: dict[str, Any]) -> Any:
    found = distribution(spec)
    if isinstance(found, CategoricalDistribution):
        return json.loads(trial.suggest_categorical(key, found.choices))
    number = trial.suggest_int if isinstance(found, IntDistribution) else trial.suggest_float
    return number(key, found.low, found.high, step=found.step, log=found.log)


def masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show none of it
        return "(an unreadable URL)"


def open_storage(url: str, heartbeat_s: int, grace_s: int, max_retry: int) -> optuna.storages.BaseStorage:
    """A journal file, or a database whose trials beat every ``heartbeat_s`` s; one silent for ``grace_s`` is retried."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(4):  # workers starting together race to create the tables: the losers try again
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s or None, grace_period=grace_s if heartbeat_s else None,
                                              heartbeat_stale_trial_callback=Retry(max_retry) if heartbeat_s else None)
        except Exception as error:  # unreachable server, bad URL, missing driver, that race
            if attempt == 3 or not isinstance(error, (IntegrityError, ProgrammingError)):
                reason = str(error).splitlines()[0].replace(url, masked(url))
                raise SweepError(f"--storage {masked(url)}: cannot use it ({reason})") from None
            time.sleep(1 + attempt)


def open_study(settings: SweepSettings, create: bool = False, worker: int = 0) -> optuna.Study:
    pruner = optuna.pruners.MedianPruner() if settings.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=open_storage(settings.url, settings.heartbeat_s, settings.grace_s, settings.max_retry),
                                study_name=settings.study, pruner=pruner, direction=settings.direction, load_if_exists=not create)
    # --seed for a fresh sweep's first worker; other workers and resumed sweeps move away from its random start
    study.sampler = optuna.samplers.TPESampler(seed=settings.sampler["seed"] + 1000 * worker + len(study.trials))
    return study


class OptunaPruning(pl.Callback):
    """Reports the objective after every validation and stops the run when the pruner says so (optuna_integration's
    callback imports lightning.pytorch, whose callbacks a pytorch_lightning Trainer refuses)."""

    def __init__(self, trial: optuna.Trial, metric: str, values: dict[str, Any]) -> None:
        self.trial, self.metric, self.values = trial, metric, values

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.metric])
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            if trainer.logger is not None:  # HParams shows the pruned trial
                trainer.logger.log_hyperparams(self.values, {f"final_{self.metric}": value})
                trainer.logger.finalize("success")
            raise optuna.TrialPruned(f"pruned after epoch {trainer.current_epoch}: {self.metric}={value:.4g}")


class StopSignal(pl.Callback):
    """SIGTERM or SIGUSR1: noted and passed on to the workers; as a callback it stops the Trainer at the next batch
    boundary (never inside the signal handler, which could interrupt a checkpoint write)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.children: list[subprocess.Popen] = []

    def listen(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, frame: Any) -> None:
        self.name = self.name or signal.Signals(signum).name
        for child in self.children:
            child.send_signal(signum)

    def check(self, *_: Any) -> None:
        if self.name:
            raise Stopped

    on_train_batch_start = on_train_batch_end = on_validation_batch_start = on_test_batch_start = check

    def wait(self, seconds: int) -> None:
        for _ in range(seconds):
            if not self.name:
                time.sleep(1)


def run_trial(trial: optuna.Trial, settings: SweepSettings, stop: StopSignal) -> float:
    """The config with the trial's values, once per seed (and fold), as ordinary runs; their mean."""
    values = {key: suggest(trial, key, spec) for key, spec in settings.space["parameters"].items()}
    metric, folds, results, run_dirs = settings.metric, settings.folds, [], []
    options = [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in values.items()]
    for index, (seed, fold) in enumerate((s, f) for s in settings.seeds for f in (range(folds) if folds else [None])):
        version = (f"trial_{trial.number}" + (f"_seed_{seed}" if len(settings.seeds) > 1 else "")
                   + (f"_fold_{fold}" if fold is not None else ""))
        hparams = {**values, "seed": seed, **({"fold": fold} if folds else {})}
        pruning = [OptunaPruning(trial, metric, hparams)] if index == 0 and metric.startswith("val/") else []
        try:
            stop.check()
            result = run(settings.config, *settings.extra, *(fold_options(fold, folds) if folds else []), *seed_options(seed),
                         *options, *named_run_options(Path(settings.folder, version), hparams), callbacks=[*pruning, stop])
        except (Stopped, SIGTERMException):  # Lightning's own SIGTERM exit: a SystemExit, which optimize would not catch
            raise Stopped(trial.number) from None
        results.append(float(result.metrics[metric.split("/")[0]][metric]))
        run_dirs.append(str(result.folder))
    mean, spread = mean_spread(results)
    for key, value in {"run_dirs": run_dirs, "values_per_run": results, "std": spread, "n": len(results)}.items():
        trial.set_user_attr(key, value)
    return mean


def objective(trial: optuna.Trial, study: optuna.Study, settings: SweepSettings, stop: StopSignal) -> float:
    """run_trial, unless the trials ahead of this one (finished, running or queued) fill the study already."""
    ahead = [t for t in study.get_trials(deepcopy=False, states=(*PLACES, TrialState.WAITING)) if t.number < trial.number]
    if len(ahead) >= settings.trials:
        trial.set_user_attr("surplus", True)
        raise Stopped
    try:
        value = run_trial(trial, settings, stop)
    except Exception as error:
        if not isinstance(error, Stopped):
            print(f"trial {trial.number}: {'' if isinstance(error, optuna.TrialPruned) else 'failed: '}{error}", flush=True)
        raise
    print(f"trial {trial.number}: {settings.metric} = {value:.6g}", flush=True)
    return value


def work(settings: SweepSettings, stop: StopSignal, worker: int = 0) -> None:
    """study.optimize one trial at a time until ``trials`` are finished (without heartbeats: finished or running), the
    deadline passes or a stop signal arrives. Not MaxTrialsCallback: it counts after a trial ends, so workers would
    start trials past the limit while others run."""
    study, failures, beat = open_study(settings, worker=worker), 0, settings.heartbeat_s
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # objective's own lines say what became of each trial
    stop.listen()
    if settings.workers > 1:  # share the cores: oversubscribed intra-op threads cost more than they give
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    while not stop.name and (settings.deadline is None or time.time() < settings.deadline) and failures <= settings.trials:
        if beat:
            optuna.storages.fail_stale_trials(study)
        finished, taken = (len(study.get_trials(deepcopy=False, states=states)) for states in (FINISHED, PLACES))
        if finished >= settings.trials or (taken >= settings.trials and not beat):
            return  # without heartbeats the trials running elsewhere end there or --resume fails them
        if taken >= settings.trials:  # see whether they end or go stale
            stop.wait(beat)
            continue
        try:
            study.optimize(lambda trial: objective(trial, study, settings, stop), n_trials=1)
        except Stopped as stopped:  # optimize has failed the trial
            if stopped.args:
                requeue(study, stopped.args[0], settings, f"handed back ({stop.name})")
                return
        except Exception:  # a diverging run, say: the trial fails, the sweep goes on
            failures += 1


def requeue(study: optuna.Study, number: int, settings: SweepSettings, why: str) -> None:
    """Trial ``number`` fails (if still running) and its values go back to the study as a new trial."""
    if study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
        study.tell(number, state=TrialState.FAIL)
    if (trial := study.get_trials(deepcopy=False)[number]).params:  # else it never started: a fresh trial takes its place
        Retry(max_retry=settings.max_retry)(study, trial)
    print(f"trial {number} {why}: queued again", flush=True)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (``device_count`` asks NVML: no CUDA here)."""
    count, given = torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES")
    return ([name.strip() for name in given.split(",") if name.strip()] if given is not None else list(map(str, range(count))))[:count]


def worker_gpus(workers: int, per_worker: int, gpus: list[str]) -> list[str | None]:
    """Each worker's ``CUDA_VISIBLE_DEVICES`` (None: as it is): its own GPU while there are enough, then round the list."""
    if not per_worker or not gpus:
        return [None] * workers
    return [",".join(gpus[(index * per_worker + k) % len(gpus)] for k in range(per_worker)) for index in range(workers)]


def watch_workers(settings: SweepSettings, study: optuna.Study, stop: StopSignal) -> None:
    """``workers`` processes on the study (output: worker_<i>.log), each with its GPU; the study's progress printed."""
    folder, env, finished, gpus = Path(settings.folder), {**os.environ, CHILD_STORAGE: settings.url}, -1, visible_gpus()
    stop.listen()
    for index, devices in enumerate(worker_gpus(settings.workers, settings.gpus_per_worker, gpus)):
        if devices is not None:
            shared = " (shared: more workers than GPUs)" * (settings.workers > len(gpus))
            print(f"worker {index}: CUDA_VISIBLE_DEVICES={devices}{shared}", flush=True)
        with open(folder / f"worker_{index}.log", "a") as log:
            stop.children.append(subprocess.Popen(
                [sys.executable, "-m", "lightning_models.workflows.sweep", "--worker", str(folder), str(index)],
                stdout=log, stderr=subprocess.STDOUT, env=env if devices is None else {**env, "CUDA_VISIBLE_DEVICES": devices}))
    while any(worker.poll() is None for worker in stop.children):
        if finished < (finished := len(study.get_trials(deepcopy=False, states=FINISHED))):
            print(f"{settings.study}: {finished} of {settings.trials} trials finished", flush=True)
        time.sleep(1)
    for index, worker in enumerate(stop.children):
        if worker.returncode:
            print(f"worker {index} ended with status {worker.returncode}; see {folder / f'worker_{index}.log'}")
