"""scripts/sweep.py on a real PostgreSQL server (skipped without initdb): separate processes join one study; the
trial of a SIGKILLed worker is failed after the grace period and run again by the survivor; a worker told to stop
(SIGTERM) hands its trial back at once and exits 0; the password never lands on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import pytorch_lightning as pl
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from tests.conftest import ROOT
from tests.helpers import IRIS, PASSWORD, write_space

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


class SignalAtBatch(pl.Callback):
    """Sends ``signal`` to its own process when batch 0 of epoch ``epoch`` is about to train, in the first run
    whose log folder contains ``log_dir_contains`` (it creates the file ``once`` first: its time is the signal's),
    once the file ``after`` exists (another trial's metrics.json: the other worker is idle by then)."""

    def __init__(self, signal: str, epoch: int, once: str, log_dir_contains: str, after: str) -> None:
        self.signal, self.epoch, self.once, self.log_dir_contains, self.after = signal, epoch, once, log_dir_contains, after

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, 0) and self.log_dir_contains in str(trainer.log_dir):
            if not os.path.exists(self.once):
                while not os.path.exists(self.after):
                    time.sleep(0.1)
                open(self.once, "w").close()
                os.kill(os.getpid(), signal.Signals[self.signal])


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)}  # the callbacks above, for the trials
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "sweep.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def two_workers_one_interrupted(tmp_path: Path, url: str, signal_name: str, grace: int) -> tuple[list, list[str], float]:
    """Two sweep.py processes on one 2-trial study; the one that runs trial 1 gets ``signal_name`` in its 2nd epoch,
    after trial 0 has finished.
    Returns (exit statuses, outputs, the time of the signal)."""
    marker = tmp_path / "signalled"
    callback = {"class_path": "tests.test_sweep_cluster.SignalAtBatch",
                "init_args": {"signal": signal_name, "epoch": 1, "once": str(marker), "log_dir_contains": "trial_1",
                              "after": str(tmp_path / "lightning_logs" / "iris_mlp_classifier" / "c" / "trial_0" / "metrics.json")}}
    args = ["--config", IRIS, "--space", write_space(tmp_path), "--trials", "2", "--pruner", "none", "--name", "c",
            "--storage", url, "--heartbeat", "1", "--grace", str(grace),
            "--", "--trainer.max_epochs=2", f"--trainer.callbacks+={json.dumps(callback)}"]
    workers = [start(args, tmp_path) for _ in range(2)]  # at once: they also race to create the tables
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    return [worker.returncode for worker in workers], outputs, marker.stat().st_mtime


def check_study(url: str, folder: Path) -> tuple[optuna.trial.FrozenTrial, optuna.trial.FrozenTrial]:
    """2 complete trials, none running or queued; trial 1 failed and retried once with its values; every run folder
    belongs to one trial. Returns (trial 1, its retry)."""
    trials = optuna.load_study(study_name="iris_mlp_classifier/c", storage=url).trials
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 2 and TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert trials[1].state == TrialState.FAIL
    assert all(t.user_attrs.get("surplus") for t in trials if t.state == TrialState.FAIL and t.number != 1)
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retry_history(t)]
    assert len(retries) == 1 and RetryHeartbeatStaleTrialCallback.retry_history(retries[0]) == [1]
    assert retries[0].state == TrialState.COMPLETE and retries[0].params == trials[1].params
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert [[Path(d).name for d in t.user_attrs["run_dirs"]] for t in complete] == [[f"trial_{t.number}"] for t in complete]
    assert sorted(p.name for p in folder.glob("trial_*")) == sorted(f"trial_{t.number}" for t in [trials[1], *complete])
    for run_dir in folder.glob("trial_*"):  # event files are named ...<host>.<pid>.<n>: one process wrote each folder
        assert len({path.name.split(".")[-2] for path in run_dir.glob("events.out.tfevents.*")}) == 1, run_dir
    assert not (folder / "trial_1" / "metrics.json").exists()  # the interrupted run never finished
    return trials[1], retries[0]


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_after_the_grace_period_and_run_again(tmp_path, postgres_url):
    codes, outputs, killed_at = two_workers_one_interrupted(tmp_path, postgres_url, "SIGKILL", grace=4)
    assert sorted(codes) == [-signal.SIGKILL, 0], outputs
    trial, retry = check_study(postgres_url, tmp_path / "lightning_logs" / "iris_mlp_classifier" / "c")
    waited = trial.datetime_complete.timestamp() - killed_at  # the idle survivor failed it once it had stopped beating
    print(f"\nSIGKILL: trial 1 failed {waited:.1f} s after the kill (heartbeat 1 s, grace 4 s); its retry "
          f"{retry.number} started {retry.datetime_start.timestamp() - killed_at:.1f} s after")
    assert 4 - 1 - 0.5 < waited < 15


@pytest.mark.slow
def test_a_worker_told_to_stop_hands_its_trial_back_at_once(tmp_path, postgres_url):
    codes, outputs, stopped_at = two_workers_one_interrupted(tmp_path, postgres_url, "SIGTERM", grace=60)
    assert codes == [0, 0], outputs
    assert sum("trial 1 handed back (SIGTERM): queued again" in output for output in outputs) == 1, outputs
    trial, retry = check_study(postgres_url, tmp_path / "lightning_logs" / "iris_mlp_classifier" / "c")
    handed_back = trial.datetime_complete.timestamp() - stopped_at
    print(f"\nSIGTERM: trial 1 failed {handed_back:.1f} s after the signal; its retry {retry.number} started "
          f"{retry.datetime_start.timestamp() - stopped_at:.1f} s after (grace 60 s)")
    assert handed_back < 5  # not the 60 s grace period


@pytest.mark.slow
def test_no_password_on_disk_with_workers_and_env_storage(tmp_path, postgres_url, monkeypatch):
    with_password = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("OPTUNA_STORAGE", with_password)
    common = ["--config", IRIS, "--space", write_space(tmp_path), "--trials", "2", "--pruner", "none"]
    extra = ["--", "--trainer.max_epochs=1"]
    runs = {"w": [*common, "--name", "w", "--workers", "2", "--storage", with_password, *extra],  # the URL, once typed
            "e": [*common, "--name", "e", "--storage", "env:OPTUNA_STORAGE", *extra]}
    for args in runs.values():
        done = start(args, tmp_path)
        output = done.communicate(timeout=600)[0]
        assert done.returncode == 0, output
        assert PASSWORD not in output
    root = tmp_path / "lightning_logs" / "iris_mlp_classifier"
    assert yaml.safe_load((root / "w" / "sweep.yaml").read_text())["storage"] == postgres_url.replace("postgres@", "postgres:***@")
    assert yaml.safe_load((root / "e" / "sweep.yaml").read_text())["storage"] == "env:OPTUNA_STORAGE"
    for log in ("worker_0.log", "worker_1.log"):  # both workers reached the database
        assert "trial " in (root / "w" / log).read_text(), log
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(written) > 20 and not [path for path in written if PASSWORD.encode() in path.read_bytes()]
    for name in runs:
        trials = optuna.load_study(study_name=f"iris_mlp_classifier/{name}", storage=with_password).trials
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


def test_a_bad_storage_is_one_line_without_the_password(tmp_path, postgres_url, monkeypatch, capsys):
    from lightning_models.workflows.sweep import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PGPASSWORD")
    wrong = postgres_url.replace("postgres@", "postgres:not-the-Pa55word@")
    for storage, message in [(postgres_url, "password"), (wrong, "password authentication failed"),
                             ("env:NO_SUCH_VARIABLE", "the environment variable NO_SUCH_VARIABLE is not set")]:
        status = main(["--config", IRIS, "--space", write_space(tmp_path), "--trials", "1", "--storage", storage])
        error = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(error) == 1 and message in error[0] and "Pa55word" not in error[0], error
    assert not (tmp_path / "lightning_logs").exists()
