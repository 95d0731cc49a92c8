"""scripts/sweep.py: bad input, a killed sweep resumed, two workers on a real PostgreSQL server, TensorBoard's
HParams tab over HTTP, and best.yaml re-training to the best trial's metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from tests.conftest import CONFIGS, ROOT, run_train
from tests.helpers import HIDDEN, IRIS, LR, SPACE, free_port, write_space

SHORT = ["--trainer.max_epochs=4", "--trainer.check_val_every_n_epoch=1"]


def sweep(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the tests' callbacks, for trials that use them
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def journal_study(folder: Path) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    settings = yaml.safe_load((folder / "sweep.yaml").read_text())
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "journal.log")))
    return optuna.load_study(study_name=settings["study"], storage=storage)


@pytest.mark.parametrize(("space", "options", "message"), [
    ({"parameters": {"model.init_args.optimizer.init_args.learning_rate": {"type": "float", "low": 0.01, "high": 0.1}}},
     [], "unknown key 'model.init_args.optimizer.init_args.learning_rate'; closest valid keys: " + LR),
    ({"parameters": {LR: {"type": "float", "low": 0.1, "high": 0.01}}}, [], "`low <= high` must hold, but got (low=0.1"),
    ({"parameters": {LR: {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}, [], "`low > 0` must hold for `log=True`"),
    ({"parameters": {HIDDEN: {"type": "categorical", "choices": []}}}, [], "The `choices` must contain one or more elements"),
    ({**SPACE, "objective": {"metric": "val/r2"}}, [], "objective metric 'val/r2' is never logged"),
    (SPACE, ["--storage", "postgresql://nobody@127.0.0.1:1/none"], "--storage postgresql://nobody@127.0.0.1:1/none: cannot"),
    (SPACE, ["--storage", "postgresql+psycopg://nobody:hunter2@127.0.0.1:1/none"], "--storage postgresql+psycopg://nobody:***@127"),
    (SPACE, ["--seeds", "0-x"], "--seeds '0-x': '0-x' is not a seed or a range; give e.g. 0-4"),
    (SPACE, ["--heartbeat", "5", "--grace", "5"], "--heartbeat 5 --grace 5 --max-retry 2: expected"),
    (SPACE, ["--folds", "1"], "--folds 1: expected an integer of at least 2"),
    ({**SPACE, "objective": {"metric": "test/acc", "direction": "maximize"}}, [],
     "objective metric 'test/acc': choosing by the test set leaves no held-out estimate"),
    ({**SPACE, "objective": {"metric": "test/r2"}}, ["--test-objective"], "objective metric 'test/r2' is never logged"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, space, options, message):
    from lightning_models.workflows.sweep import main

    monkeypatch.chdir(tmp_path)
    status = main(["--config", IRIS, "--space", write_space(tmp_path, space), "--trials", "2", *options])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
    assert "hunter2" not in error[0]  # a password is never shown
    if "never logged" in message:
        assert "val/acc" in error[0] and "val/loss" in error[0]  # the metrics that do exist
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retry_history
def test_killed_worker_then_resume_gives_exactly_the_requested_trials(tmp_path):
    kill = {"class_path": "tests.helpers.KillAtBatch",
            "init_args": {"epoch": 2, "once": str(tmp_path / "killed-once"), "log_dir_contains": "trial_1"}}
    args = ["--config", IRIS, "--space", write_space(tmp_path), "--trials", "4", "--pruner", "none", "--name", "k",
            "--workers", "2"]
    first = sweep([*args, "--", *SHORT, f"--trainer.callbacks+={json.dumps(kill)}"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]  # the other worker carried on
    assert "ended with status -9" in first.stdout  # the worker running trial 1 was SIGKILLed in its 3rd epoch
    folder = tmp_path / "lightning_logs" / "iris_mlp_classifier" / "k"
    before = {t.number: t.state for t in journal_study(folder).trials}
    assert before[1] == TrialState.RUNNING and list(before.values()).count(TrialState.COMPLETE) == 3

    resumed = sweep([*args, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "trial 1 was left running by a dead worker: queued again" in resumed.stdout
    trials = journal_study(folder).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4  # exactly as requested
    assert [t.state for t in trials if t.number == 1] == [TrialState.FAIL]
    retry = next(t for t in trials if RetryHeartbeatStaleTrialCallback.retry_history(t) == [1])  # its values again
    assert retry.params == trials[1].params and retry.state == TrialState.COMPLETE
    run_dirs = [Path(d).name for t in trials if t.state == TrialState.COMPLETE for d in t.user_attrs["run_dirs"]]
    assert sorted(run_dirs) == sorted(f"trial_{t.number}" for t in trials if t.state == TrialState.COMPLETE)
    assert "trial_1" not in run_dirs  # one folder per trial number, none reused
    assert sorted(path.name for path in folder.glob("trial_*")) == [f"trial_{n}" for n in range(5)]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("sweep")
    done = sweep(["--config", IRIS, "--space", write_space(cwd), "--trials", "3", "--pruner", "none", "--name", "s",
                  "--", *SHORT], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best: trial" in done.stdout
    return cwd / "lightning_logs" / "iris_mlp_classifier" / "s"


@pytest.mark.slow
def test_best_yaml_retrains_to_the_best_trials_metrics(finished_sweep, tmp_path):
    study = journal_study(finished_sweep)
    best = study.best_trial
    assert best.value == min(t.value for t in study.trials)  # val/loss is minimised
    retrained = run_train(["fit", "--config", str(finished_sweep / "best.yaml"), "--trainer.enable_progress_bar=false"],
                          tmp_path)
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    expected = json.loads((Path(best.user_attrs["run_dirs"][0]) / "metrics.json").read_text())
    got = json.loads(next(tmp_path.glob("lightning_logs/*/version_0/metrics.json")).read_text())
    assert got["val"] == expected["val"] and got["test"] == expected["test"]
    assert got["val"]["val/loss"] == pytest.approx(best.value)
    again = sweep(["--config", IRIS, "--space", "unused.yaml", "--name", "s", "--summary"], finished_sweep.parents[2])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"best: trial {best.number}, val/loss = {best.value:.6g}" in again.stdout
    assert f"| {best.number} | " in (finished_sweep / "summary.md").read_text()


@pytest.mark.slow
def test_seeds_train_each_trial_once_per_seed_and_the_summary_adds_up(tmp_path):
    done = sweep(["--config", IRIS, "--space", write_space(tmp_path), "--trials", "1", "--seeds", "0-2", "--name", "m",
                  "--", "--trainer.max_epochs=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "lightning_logs" / "iris_mlp_classifier" / "m"
    values = [json.loads((folder / f"trial_0_seed_{seed}" / "metrics.json").read_text())["val"]["val/loss"] for seed in (0, 1, 2)]
    assert len(set(values)) == 3  # three seeds, three runs
    trial = journal_study(folder).trials[0]
    assert trial.value == pytest.approx(sum(values) / 3)
    assert trial.user_attrs["std"] == pytest.approx((sum((v - sum(values) / 3) ** 2 for v in values) / 2) ** 0.5)  # n - 1
    assert trial.user_attrs["n"] == 3
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in (folder / "summary.md").read_text().splitlines() if line.startswith("|")]
    header, rule, row = rows  # one trial
    assert len(header) == len(rule) == len(row) and all(header) and set(rule) == {"---"}  # a header for every column
    cells = dict(zip(header, row))
    assert not [name for name in header if "init_args" in name]  # the names TensorBoard's HParams tab shows
    assert float(cells["optimizer.lr"]) == pytest.approx(trial.params[LR])
    assert json.loads(cells["net.hidden_sizes"]) == json.loads(trial.params[HIDDEN])
    assert json.loads(cells["net.activation"]) == json.loads(trial.params["model.init_args.net.init_args.activation"])
    assert float(cells["val/loss (mean)"]) == pytest.approx(trial.value, rel=1e-5)
    assert [float(v) for v in cells["val/loss per run"].split(", ")] == pytest.approx(values, rel=1e-5)
    assert cells["std (n)"] == f"{trial.user_attrs['std']:.2g} (3)"
    assert cells["run folders"] == "trial_0_seed_0, trial_0_seed_1, trial_0_seed_2" and cells["trial"] == "0"


def test_folds_on_a_datamodule_that_cannot_fold_is_one_line(tmp_path, monkeypatch, capsys):
    from lightning_models.workflows.sweep import main

    monkeypatch.chdir(tmp_path)
    space = {"parameters": {LR: {"type": "float", "low": 0.001, "high": 0.1}}}
    status = main(["--config", str(CONFIGS / "exp_fit.yaml"), "--space", write_space(tmp_path, space), "--folds", "3"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and error == ["error: --folds 3: FunctionDataModule cannot fold: its training points are freshly "
                                     "sampled every step, so there is no fixed set of rows to divide into folds."]
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow
def test_folds_optimise_the_cross_validated_mean(tmp_path):
    done = sweep(["--config", IRIS, "--space", write_space(tmp_path), "--trials", "6", "--folds", "3", "--name", "cv",
                  "--pruner", "none", "--", "--trainer.max_epochs=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "lightning_logs" / "iris_mlp_classifier" / "cv"
    study = journal_study(folder)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    best = study.best_trial
    runs = [folder / f"trial_{best.number}_fold_{fold}" for fold in range(3)]
    values = [json.loads((run / "metrics.json").read_text())["val"]["val/loss"] for run in runs]
    assert best.value == pytest.approx(sum(values) / 3, rel=1e-6)
    assert best.value == min(t.value for t in study.trials)
    from collections import Counter

    from lightning_models import build

    rows = {}  # each fold validated on its own rows: together the folds' validation sets are the non-test rows once
    for fold, run in enumerate(runs):
        config = yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]
        assert (config["fold"], config["folds"]) == (fold, 3)
        datamodule = build(run / "config.yaml", "--data.init_args.standardize=false").datamodule  # raw measurements
        datamodule.setup("fit")
        rows[fold] = {name: Counter(map(tuple, tensors[0].tolist())) for name, tensors in datamodule.splits.items()}
    assert rows[0]["val"] + rows[1]["val"] + rows[2]["val"] == rows[0]["train"] + rows[0]["val"]
    assert rows[0]["test"] == rows[1]["test"] == rows[2]["test"]
    assert "mean and sample std over seeds [0] x 3 folds" in (folder / "summary.md").read_text()
    best_config = yaml.safe_load((folder / "best.yaml").read_text())  # the best values on the ordinary split
    assert not {"fold", "folds"} & set(best_config["data"]["init_args"])
    assert best_config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == pytest.approx(best.params[LR])


@pytest.mark.parametrize("space", sorted((CONFIGS / "sweeps").glob("*.yaml")), ids=lambda path: path.stem)
def test_shipped_spaces_fit_their_configs(in_tmp, space):
    from lightning_models import build
    from lightning_models.workflows.sweep import check_space

    config = re.search(r"--config configs/(\S+\.yaml)", space.read_text()).group(1)  # the space's usage line
    checked = check_space(space, set(build(CONFIGS / config).config.keys()))
    assert len(checked["parameters"]) >= 3


def post(port: int, path: str, body: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_hparams_lists_every_trial_with_its_values(finished_sweep):
    study = journal_study(finished_sweep)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(finished_sweep), "--host",
                               "127.0.0.1", "--port", str(port), "--load_fast", "false", "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, groups = time.monotonic() + 60, []
        while len(groups) < len(study.trials):
            assert time.monotonic() < deadline, f"HParams served {len(groups)} of {len(study.trials)} trials"
            time.sleep(0.5)
            try:
                groups = post(port, "/data/plugin/hparams/session_groups", {
                    "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                    "colParams": [], "startIndex": 0, "sliceSize": 100}).get("sessionGroups", [])
            except OSError:
                continue
    finally:
        server.terminate()
        server.wait(timeout=20)
    served = {group["name"]: group["hparams"] for group in groups}
    for trial in study.trials:
        hparams = served[f"trial_{trial.number}"]
        # under the readable names (readable_key: model.init_args.optimizer.init_args.lr -> optimizer.lr)
        assert hparams["optimizer.lr"] == pytest.approx(trial.params[LR])
        assert json.loads(str(hparams["net.hidden_sizes"])) == json.loads(trial.params[HIDDEN])  # a list, shown as text
        assert hparams["net.activation"] == json.loads(trial.params["model.init_args.net.init_args.activation"])
        assert not [key for key in hparams if key.startswith("_") or "init_args" in key]
