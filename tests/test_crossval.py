"""scripts/crossval.py and lightning_models.workflows.crossval: the summary against the folds' own metrics.json files, the
folds themselves, a killed cross-validation resumed, and configs whose datamodule cannot fold."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import CONFIGS, ROOT

IRIS = str(CONFIGS / "iris_mlp_classifier.yaml")
TINY = ["--trainer.max_epochs=2", "--model.init_args.updates_per_step=5"]


@pytest.fixture(scope="module")
def three_folds(tmp_path_factory):
    """One 3-fold cross-validation of iris, tiny runs, shared by the tests that only read it."""
    from lightning_models.workflows.crossval import crossval

    folder, here = tmp_path_factory.mktemp("crossval"), os.getcwd()
    os.chdir(folder)
    try:
        return crossval(IRIS, *TINY, folds=3)
    finally:
        os.chdir(here)


def test_summary_is_the_mean_and_sample_std_of_the_folds_metrics_json(three_folds):
    folder = three_folds.folder
    assert folder.parts[-3:] == ("lightning_logs", "iris_mlp_classifier", "crossval")
    records = [json.loads((folder / f"fold_{k}" / "metrics.json").read_text()) for k in range(3)]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary == json.loads(json.dumps(three_folds.summary))  # what it returns is what it wrote
    keys = [f"{stage}/{name}" for stage in ("val", "test") for name in ("acc", "f1", "loss")]
    assert list(summary["mean"]) == keys
    for key in keys:
        values = [record[key.split("/")[0]][key] for record in records]
        assert summary["mean"][key] == pytest.approx(sum(values) / 3, abs=1e-12)
        assert summary["std"][key] == pytest.approx((sum((v - sum(values) / 3) ** 2 for v in values) / 2) ** 0.5, abs=1e-12)
    mean, std = summary["mean"]["val/acc"], summary["std"]["val/acc"]
    assert f"| mean ± std | | {mean:.4f} ± {std:.4f} (n=3) |" in (folder / "summary.md").read_text()
    assert summary["n"] == 3
    for k in range(3):  # each fold an ordinary run with its own fold of the data, in TensorBoard
        config = yaml.safe_load((folder / f"fold_{k}" / "config.yaml").read_text())
        assert (config["data"]["init_args"]["fold"], config["data"]["init_args"]["folds"]) == (k, 3)
        assert list((folder / f"fold_{k}").glob("events.out.tfevents.*"))


def test_baselines_are_fitted_on_each_folds_training_rows(three_folds):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from lightning_models.workflows.crossval import fold_datamodule

    baselines = three_folds.summary["baselines"]
    assert set(baselines) == {"LogisticRegression", "MLPClassifier"}
    iris = load_iris()
    for fold in range(3):  # recomputed from the raw measurements of the fold's rows
        rows = fold_datamodule(IRIS, fold, 3, *TINY).row_indices()
        scaler = StandardScaler().fit(iris.data[rows["train"]])
        model = LogisticRegression(max_iter=1000).fit(scaler.transform(iris.data[rows["train"]]), iris.target[rows["train"]])
        for split in ("val", "test"):
            expected = model.score(scaler.transform(iris.data[rows[split]]), iris.target[rows[split]])
            assert baselines["LogisticRegression"]["folds"][fold][f"{split}/acc"] == pytest.approx(expected, abs=1e-9)
    scores = [fold["val/acc"] for fold in baselines["MLPClassifier"]["folds"]]
    assert baselines["MLPClassifier"]["mean"]["val/acc"] == pytest.approx(statistics.fmean(scores))
    assert "| fold | net val/acc | LogisticRegression val/acc | MLPClassifier val/acc |" in three_folds.table


def test_folds_validate_on_disjoint_rows_that_cover_the_non_test_rows():
    from lightning_models import build
    from lightning_models.workflows.crossval import fold_datamodule

    plain = build(IRIS).datamodule.row_indices()
    non_test = np.union1d(plain["train"], plain["val"])
    folds = [fold_datamodule(IRIS, k, 3).row_indices() for k in range(3)]
    vals = [set(rows["val"].tolist()) for rows in folds]
    assert sum(map(len, vals)) == len(set().union(*vals)) == len(non_test)  # disjoint
    assert set().union(*vals) == set(non_test.tolist())  # covering
    for rows, val in zip(folds, vals):
        assert np.array_equal(rows["test"], plain["test"])  # the test rows never move
        assert set(rows["train"].tolist()) == set(non_test.tolist()) - val


def test_same_command_again_refuses_other_settings_in_the_same_folder(three_folds, monkeypatch):
    from lightning_models.workflows.crossval import CrossValidationError, crossval

    monkeypatch.chdir(three_folds.folder.parents[2])
    with pytest.raises(CrossValidationError, match=r"holds a cross-validation with other settings \(folds 3 there, 2 now\)"):
        crossval(IRIS, *TINY, folds=2)


@pytest.mark.slow
def test_killed_crossvalidation_rerun_skips_the_finished_folds(tmp_path, capsys, monkeypatch):
    from lightning_models.workflows.crossval import main

    kill = {"class_path": "tests.helpers.KillAtBatch",
            "init_args": {"epoch": 1, "once": str(tmp_path / "killed-once"), "log_dir_contains": "fold_2"}}
    args = ["--config", IRIS, "--folds", "3", "--", "--trainer.max_epochs=3", "--trainer.check_val_every_n_epoch=1",
            "--model.init_args.updates_per_step=5", f"--trainer.callbacks+={json.dumps(kill)}"]
    killed = subprocess.run([sys.executable, str(ROOT / "scripts" / "crossval.py"), *args], cwd=tmp_path, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILLed in fold 2's second epoch
    folder = tmp_path / "lightning_logs" / "iris_mlp_classifier" / "crossval"
    finished = {k: folder / f"fold_{k}" / "metrics.json" for k in (0, 1)}
    before = {k: (path.stat().st_mtime_ns, path.read_text()) for k, path in finished.items()}
    assert not (folder / "fold_2" / "metrics.json").exists() and (folder / "fold_2" / "checkpoints" / "last.ckpt").is_file()

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(args) == 0  # the same command again
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("fold 0 (1 of 3), seed 0 (finished earlier): ") for line in lines)
    assert any(line.startswith("fold 1 (2 of 3), seed 0 (finished earlier): ") for line in lines)
    assert any(line.startswith("fold 2 (3 of 3), seed 0 (resumed from its last.ckpt): ") for line in lines)
    assert {k: (path.stat().st_mtime_ns, path.read_text()) for k, path in finished.items()} == before
    summary = json.loads((folder / "summary.json").read_text())
    runs = {r["fold"]: r for r in summary["runs"]}
    for k in (0, 1, 2):  # the reused numbers, and fold 2 finished
        record = json.loads((folder / f"fold_{k}" / "metrics.json").read_text())
        assert (runs[k]["val"], runs[k]["test"]) == (record["val"], record["test"])


@pytest.mark.parametrize(("config", "options", "message"), [
    ("fashion_cnn", [], "configs/fashion_cnn.yaml: FashionMNISTDataModule cannot fold: "),
    ("exp_fit", [], "configs/exp_fit.yaml: FunctionDataModule cannot fold: "),
    ("iris_mlp_classifier", ["--folds", "1"], "--folds 1: expected an integer of at least 2"),
    ("iris_mlp_classifier", ["--seeds", "0,x"], "--seeds '0,x': 'x' is not a seed or a range"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, config, options, message):
    from lightning_models.workflows.crossval import main

    monkeypatch.chdir(tmp_path)
    status = main(["--config", str(CONFIGS / f"{config}.yaml"), *options])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
    if "cannot fold" in message:
        from lightning_models import build

        reason = type(build(str(CONFIGS / f"{config}.yaml")).datamodule).why_no_folds
        assert error[0].endswith(reason) and reason
    assert not (tmp_path / "lightning_logs").exists()


def test_a_datamodule_without_a_fold_argument_says_so():
    import pytorch_lightning as pl

    from datamodules import IrisDataModule
    from lightning_models.workflows.crossval import why_it_cannot_fold

    assert why_it_cannot_fold(pl.LightningDataModule()) == "LightningDataModule has no fold argument"
    assert why_it_cannot_fold(IrisDataModule()) is None


def test_the_script_passes_options_after_the_double_dash_to_every_fold(tmp_path):
    from tests.helpers import run_script

    done = run_script(ROOT / "scripts" / "crossval.py", "--config", IRIS, "--folds", "2", "--seeds", "3,4", "--name", "cv",
                      "--", *TINY, "--trainer.max_epochs=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "lightning_logs" / "iris_mlp_classifier" / "cv"
    assert sorted(path.name for path in folder.glob("fold_*")) == ["fold_0_seed_3", "fold_0_seed_4", "fold_1_seed_3", "fold_1_seed_4"]
    for path in folder.glob("fold_*"):
        record = json.loads((path / "metrics.json").read_text())
        assert record["epochs"] == 1 and record["seed"] == int(path.name[-1])
    lines = [line for line in done.stdout.splitlines() if line.startswith("fold ")]
    assert len(lines) == 4 and all(f"/{path.name})" in "".join(lines) for path in folder.glob("fold_*"))  # a line per fold and seed
    assert "| mean ± std | | " in done.stdout and " (n=4) |" in done.stdout
