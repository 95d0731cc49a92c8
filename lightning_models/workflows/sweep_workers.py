"""The workers of a sweep: a loop that runs trials until the study holds the trials asked for, the deadline passes or a
stop signal arrives; worker processes started on one study (--workers N) and watched; a stop signal that hands the
running trial back to the study; and trials left running by dead workers queued again (--resume)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from lightning_models.workflows.sweep_settings import SweepSettings
from lightning_models.workflows.sweep_storage import open_study
from lightning_models.workflows.sweep_trial import run_trial

FINISHED, PLACES = (TrialState.COMPLETE, TrialState.PRUNED), (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
CHILD_STORAGE = "SWEEP_STORAGE_URL"  # the parent hands its workers the storage URL here, never on a command line


class HandBack(Exception):
    """A stop signal arrived during trial ``args[0]``: it goes back to the study. No args: another worker took the last place."""


class StopSignal:
    """SIGTERM or SIGUSR1 to a sweep process: the trial it is running goes back to the study at once, its loop stops,
    and a parent passes the signal on to its worker processes, which do the same.

    ``name``: the signal's name once one arrived; ``trial``: the number of the trial this process runs, if any;
    ``children``: the worker processes of --workers N. Usage: ``stop = StopSignal(); stop.listen()``, then each trial
    runs inside ``with stop.running(trial.number):`` and loops ask ``stop.name``.
    """

    def __init__(self) -> None:
        self.name: str | None = None
        self.trial: int | None = None
        self.children: list[subprocess.Popen] = []

    def listen(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, frame: Any) -> None:
        self.name = signal.Signals(signum).name
        for child in self.children:  # the workers of --workers N: each hands its trial back and exits
            child.send_signal(signum)
        trial, self.trial = self.trial, None  # a trial stops at once (once); elsewhere the worker's loop sees the name
        if trial is not None:
            raise HandBack(trial)

    @contextmanager
    def running(self, number: int) -> Iterator[None]:
        """Trial ``number`` runs inside: a stop signal, during it or before, hands it back (raises HandBack)."""
        self.trial = number
        try:
            if self.name:
                raise HandBack(number)
            yield
        finally:
            self.trial = None

    def wait(self, seconds: int) -> None:
        """Sleep ``seconds``, a second at a time, to heed a stop signal."""
        for _ in range(seconds):
            if self.name:
                return
            time.sleep(1)


def objective(trial: optuna.Trial, study: optuna.Study, settings: SweepSettings, stop: StopSignal) -> float:
    """run_trial, unless the trials ahead of this one (finished, running or queued) fill the study already."""
    ahead = [t for t in study.get_trials(deepcopy=False, states=(*PLACES, TrialState.WAITING)) if t.number < trial.number]
    if len(ahead) >= settings.trials:
        trial.set_user_attr("surplus", True)
        raise HandBack
    try:
        with stop.running(trial.number):
            value = run_trial(trial, settings)
    except Exception as error:
        if not isinstance(error, HandBack):
            print(f"trial {trial.number}: {'' if isinstance(error, optuna.TrialPruned) else 'failed: '}{error}", flush=True)
        raise
    print(f"trial {trial.number}: {settings.metric} = {value:.6g}", flush=True)
    return value


def work(settings: SweepSettings, stop: StopSignal, worker: int = 0) -> None:
    """Run trials until the study holds ``trials`` finished ones (without heartbeats: finished or running), the
    deadline passes or a stop signal arrives. study.optimize runs each trial: it fails stale trials and beats."""
    study, failures, beat = open_study(settings, False, worker), 0, settings.heartbeat_s
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # objective's own lines say what became of each trial
    stop.listen()
    if settings.workers > 1:  # share the cores: oversubscribed intra-op threads cost more than they give
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    while not stop.name and (settings.deadline is None or time.time() < settings.deadline) and failures <= settings.trials:
        if beat:
            optuna.storages.fail_stale_trials(study)
        # Not optuna's MaxTrialsCallback: it counts after a trial ends, so workers would start trials past the limit
        # while others' are RUNNING; this counts them (and those queued ahead) before a trial starts, and waits on them.
        finished, taken = (len(study.get_trials(deepcopy=False, states=states)) for states in (FINISHED, PLACES))
        if finished >= settings.trials or (taken >= settings.trials and not beat):  # without heartbeats the last
            return  # trials, running elsewhere, end there or --resume fails them
        if taken >= settings.trials:  # see whether they end or go stale
            stop.wait(beat)
            continue
        try:
            study.optimize(lambda trial: objective(trial, study, settings, stop), n_trials=1)
        except HandBack as stopped:  # optimize has marked the trial failed
            if not stopped.args:  # surplus: the places are taken, but a retry queued meanwhile may still need a worker
                continue
            requeue(study, stopped.args[0], settings, f"handed back ({stop.name})")
            return
        except Exception:  # a diverging run, say: the trial fails, the sweep goes on
            failures += 1


def requeue(study: optuna.Study, number: int, settings: SweepSettings, why: str) -> None:
    """Trial ``number`` fails (if still running) and goes back to the study with its values, as a new trial."""
    if study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
        study.tell(number, state=TrialState.FAIL)
    if (trial := study.get_trials(deepcopy=False)[number]).params:  # else it never started: a fresh trial takes its place
        RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry)(study, trial)
    print(f"trial {number} {why}: queued again", flush=True)


def resume(study: optuna.Study, settings: SweepSettings) -> None:
    """Trials left running by dead workers (with heartbeats: those that stopped beating) fail and are queued again."""
    optuna.storages.fail_stale_trials(study)  # with heartbeats; its callback queues them again
    for trial in [] if settings.heartbeat_s else study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        requeue(study, trial.number, settings, "was left running by a dead worker")


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them: its own list where it has one, else every
    GPU the driver counts (``torch.cuda.device_count``, through NVML: it starts no CUDA here); none on a CPU machine."""
    count = torch.cuda.device_count()
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [name.strip() for name in given.split(",") if name.strip()] if given is not None else list(map(str, range(count)))
    return names[:count]


def worker_gpus(workers: int, per_worker: int, gpus: list[str]) -> list[str | None]:
    """Each worker's ``CUDA_VISIBLE_DEVICES`` (None: left as it is): ``per_worker`` GPUs of ``gpus`` in turn, so each
    worker has its own while there are as many GPUs as workers, and further workers share them round the list."""
    if not per_worker or not gpus:
        return [None] * workers
    return [",".join(gpus[(index * per_worker + k) % len(gpus)] for k in range(per_worker)) for index in range(workers)]


def watch_workers(settings: SweepSettings, study: optuna.Study, stop: StopSignal) -> None:
    """Start ``workers`` processes on the study (output: worker_<i>.log), each with its GPU (``worker_gpus``), print
    the study's progress, pass a stop signal on."""
    folder, workers, env, finished = Path(settings.folder), [], {**os.environ, CHILD_STORAGE: settings.url}, -1
    stop.listen()
    gpus = visible_gpus()
    for index, devices in enumerate(worker_gpus(settings.workers, settings.gpus_per_worker, gpus)):
        if devices is not None:
            shared = " (shared: more workers than GPUs)" if settings.workers > len(gpus) else ""
            print(f"worker {index}: CUDA_VISIBLE_DEVICES={devices}{shared}", flush=True)
        with open(folder / f"worker_{index}.log", "a") as log:  # the child keeps its own copy of the handle
            command = [sys.executable, "-m", "lightning_models.workflows.sweep", "--worker", str(folder), str(index)]
            own = env if devices is None else {**env, "CUDA_VISIBLE_DEVICES": devices}
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=own))
    stop.children = workers
    while any(worker.poll() is None for worker in workers):
        if finished < (finished := len(study.get_trials(deepcopy=False, states=FINISHED))):
            print(f"{settings.study}: {finished} of {settings.trials} trials finished", flush=True)
        time.sleep(1)
    for index, worker in enumerate(workers):
        if worker.returncode:
            print(f"worker {index} ended with status {worker.returncode}; see {folder / f'worker_{index}.log'}")
