"""Where a sweep's study lives: a journal file in the sweep's folder by default, or a database URL (given, or read
from an environment variable) whose password is never shown or written; the study created or loaded there with the
sweep's pruner, direction and sampler."""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError

from lightning_models.workflows.sweep_settings import SweepError, SweepSettings


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


def open_storage(url: str, heartbeat_s: int, grace_s: int, max_retry: int) -> optuna.storages.BaseStorage:
    """The storage at ``url``; on a database, trials beat every ``heartbeat_s`` seconds (0: no heartbeats) and one
    silent for ``grace_s`` fails and is queued again, at most ``max_retry`` times."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    retry = RetryHeartbeatStaleTrialCallback(max_retry)  # the stale trial's values, as a new trial
    for attempt in range(4):  # workers starting together race to create the tables: the losers try again
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s or None, grace_period=grace_s if heartbeat_s else None,
                                              heartbeat_stale_trial_callback=retry if heartbeat_s else None)
        except Exception as error:  # sqlalchemy's errors: unreachable server, bad URL, missing driver, that race
            if attempt == 3 or not isinstance(error, (IntegrityError, ProgrammingError)):
                reason = str(error).splitlines()[0].replace(url, masked(url))
                raise SweepError(f"--storage {masked(url)}: cannot use it ({reason})") from None
            time.sleep(1 + attempt)


def open_study(settings: SweepSettings, create: bool, worker: int = 0) -> optuna.Study:
    """The sweep's study: created (``create``; an existing one is an error) or loaded."""
    pruner = optuna.pruners.MedianPruner() if settings.pruner == "median" else optuna.pruners.NopPruner()
    storage = open_storage(settings.url, settings.heartbeat_s, settings.grace_s, settings.max_retry)
    study = optuna.create_study(storage=storage, study_name=settings.study, pruner=pruner,
                                direction=settings.direction, load_if_exists=not create)
    # --seed for a fresh sweep's first worker; other workers and resumed sweeps move away from its random start
    study.sampler = optuna.samplers.TPESampler(seed=settings.sampler["seed"] + 1000 * worker + len(study.trials))
    return study
