"""Where a run's results land: any Lightning logger or none, readable hyperparameters, predict's CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from lightning_models.training.hparams import readable_hparams, readable_key
from tests.conftest import CONFIGS, ROOT, build_from_config, run_train
from tests.helpers import run_script

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
LINEAR = ["fit", "--config", str(CONFIGS / "iris_linear_regression.yaml"), "--trainer.max_epochs=2", *QUIET]


def files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def test_no_logger_still_writes_the_run_folder_and_nothing_in_the_working_directory(tmp_path):
    done = run_train([*LINEAR, "--trainer.logger=false"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "iris_linear_regression" / "version_0"
    assert {"metrics.json", "config.yaml", "checkpoints/last.ckpt"} <= files_under(run)
    assert {path.name for path in tmp_path.iterdir()} == {"lightning_logs"}  # no checkpoints/ or metrics.json here
    assert f"run directory: {Path('lightning_logs/iris_linear_regression/version_0')}" in done.stdout
    assert "TensorBoard:" not in done.stdout
    again = run_train([*LINEAR, "--trainer.logger=false"], tmp_path)  # the next run gets the next folder
    assert again.returncode == 0 and (run.parent / "version_1" / "metrics.json").is_file()


def test_csv_logger_logs_into_the_run_folder_with_the_final_metrics(tmp_path):
    done = run_train([*LINEAR, "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
                      "--trainer.logger.save_dir", "lightning_logs"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "iris_linear_regression" / "version_0"  # name: the experiment's
    metrics = json.loads((run / "metrics.json").read_text())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    final = [float(row["final_test/r2"]) for row in rows if row.get("final_test/r2")]
    assert final == [pytest.approx(metrics["test"]["test/r2"])]
    assert (run / "checkpoints" / "last.ckpt").is_file() and "TensorBoard:" not in done.stdout


def test_mlflow_logger_gets_readable_parameters_and_the_final_metrics(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is in the test extra: pip install -e '.[test]'")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow 3 refuses a bare file store without an opt-in
    done = run_train([*LINEAR, "--trainer.logger", "pytorch_lightning.loggers.MLFlowLogger",
                      "--trainer.logger.tracking_uri", store, "--trainer.logger.experiment_name", "iris"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "iris_linear_regression" / "version_0"  # checkpoints, config, metrics.json
    assert {"metrics.json", "config.yaml", "checkpoints/last.ckpt"} <= files_under(run)
    metrics = json.loads((run / "metrics.json").read_text())
    client = mlflow.tracking.MlflowClient(store)
    [found] = client.search_runs([client.get_experiment_by_name("iris").experiment_id])
    assert found.data.metrics["final_test/r2"] == pytest.approx(metrics["test"]["test/r2"])
    assert found.data.metrics["final_val/loss"] == pytest.approx(metrics["val"]["val/loss"])
    params = found.data.params
    assert params["net"] == "MLP" and params["optimizer"] == "Adam" and float(params["optimizer.lr"]) == 0.05
    assert not [key for key in params if key.startswith("_") or "init_args" in key or "class_path" in key]


def hparams_in_events(run: Path) -> tuple[dict, list[str], list[str]]:
    """The HParams tab's record in a run's event files: hyperparameter values, metric names, and the hyperparameter
    columns in the order TensorBoard's backend gives them (backend_context: ``differs`` first, then by name)."""
    values, metrics, columns = {}, [], []
    for path in sorted(run.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    for key, given in data.session_start_info.hparams.items():
                        values[key] = given.WhichOneof("kind") and getattr(given, given.WhichOneof("kind"))
                if data.HasField("experiment"):
                    metrics += [info.name.tag for info in data.experiment.metric_infos]
                    infos = sorted(data.experiment.hparam_infos, key=lambda info: (not info.differs, info.name))
                    columns += [info.name for info in infos]
    return values, metrics, columns


def test_tensorboard_hparams_are_the_readable_ones_with_the_final_metrics(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_logistic_regression.yaml"), "--trainer.max_epochs=2", *QUIET,
                      "--log_hparams", '{"model.init_args.net.init_args.hidden_sizes": "[8]"}'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "iris_logistic_regression" / "version_0"
    values, metrics, columns = hparams_in_events(run)
    run_record = {key: values.pop(key) for key in list(values) if key == "precision" or key.startswith(("machine/", "code/"))}
    assert run_record["precision"] == "32-true"  # the machine and commit entries are checked in test_precision
    assert values == {"net": "MLP", "optimizer": "Adam", "optimizer.lr": 0.05, "num_features": 4.0, "num_outputs": 3.0,
                      "updates_per_step": 50.0, "scheduler": "None", "net.hidden_sizes": "[8]"}
    # The config's own columns first (the table shows the first five), the machine stamp after them
    assert columns[:len(values)] == sorted(values) and set(columns[len(values):]) == set(run_record)
    recorded = json.loads((run / "metrics.json").read_text())
    assert sorted(metrics) == sorted(f"final_{stage}/{name}" for stage in ("val", "test") for name in ("loss", "acc", "f1"))
    assert recorded["test"]["test/acc"] > 0.8


def test_readable_hparams_name_classes_and_changed_arguments_only():
    model, _, _ = build_from_config(CONFIGS / "fashion_cnn.yaml", "--data.init_args.data_dir=unused",
                                    "--model.init_args.net.init_args.dropout=0.3")
    shown = readable_hparams(model)
    assert shown == {
        "num_features": 784, "num_outputs": 10, "net": "FashionCNN", "net.dropout": 0.3, "optimizer": "AdamW",
        "optimizer.lr": 0.004, "optimizer.weight_decay": 0.0005, "optimizer.fused": True, "scheduler": "OneCycleLR",
        "scheduler.max_lr": 0.004, "label_smoothing": 0.1,
    }  # FashionCNN's channels_last=True is its default; AdamW's betas, eps... too; loss cross_entropy
    assert readable_key("model.init_args.optimizer.init_args.lr") == "optimizer.lr"
    assert readable_key("data.init_args.batch_size") == "data.batch_size"
    # a sweep's choices of lists of classes arrive as jsonargparse Namespaces: shown as JSON text, which safe YAML reads
    import yaml
    from jsonargparse import Namespace

    choice = [Namespace(class_path="pytorch_lightning.callbacks.EMAWeightAveraging", init_args=Namespace(decay=0.998))]
    extra = readable_hparams(model, {"trainer.callbacks": choice, "data.init_args.batch_size": 64})
    assert json.loads(extra["trainer.callbacks"]) == [{"class_path": "pytorch_lightning.callbacks.EMAWeightAveraging",
                                                        "init_args": {"decay": 0.998}}]
    assert extra["data.batch_size"] == 64 and yaml.safe_load(yaml.safe_dump(extra)) == extra


@pytest.fixture(scope="module")
def trained_iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cwd = tmp_path_factory.mktemp("predict")
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.max_epochs=3", *QUIET], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd, cwd / "lightning_logs" / "iris_mlp_classifier" / "version_0"


def test_predict_writes_the_csv_that_evaluate_writes(trained_iris, tmp_path):
    cwd, run = trained_iris
    best = json.loads((run / "metrics.json").read_text())["checkpoints"]["best"]
    done = run_train(["predict", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--ckpt_path", best, *QUIET], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    written = run / "predictions-test.csv"
    assert f"predictions: {written}" in done.stdout
    evaluated = tmp_path / "evaluate.csv"
    done = run_script(ROOT / "scripts" / "evaluate.py", best, "--out", str(evaluated), cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert written.read_text() == evaluated.read_text()
    table = list(csv.DictReader(written.open()))
    accuracy = sum(row["target"] == row["predicted"] for row in table) / len(table)
    assert [int(row["id"]) for row in table] == list(range(75))
    assert accuracy == pytest.approx(json.loads((run / "metrics.json").read_text())["test"]["test/acc"])
    assert {row["target"] for row in table} == {"setosa", "versicolor", "virginica"}
    assert sorted(path.name for path in run.parent.iterdir()) == ["version_0"]  # predict made no new run folder


def test_predict_split_chooses_the_rows(trained_iris):
    cwd, run = trained_iris
    done = run_train(["predict", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--ckpt_path",
                      str(run / "checkpoints" / "last.ckpt"), "--data.init_args.predict_split", "val", *QUIET], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    table = list(csv.DictReader((run / "predictions-val.csv").open()))
    assert len(table) == 15  # val_fraction 0.2 of the 75 training rows
    bad = run_train(["predict", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"),
                     "--data.init_args.predict_split", "tset", *QUIET], cwd)
    assert bad.returncode == 2 and "tset" in bad.stderr and len(bad.stderr.strip().splitlines()) <= 2
