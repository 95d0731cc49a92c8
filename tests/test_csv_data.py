"""Bring your own table: CSVDataModule on CSV files the tests write, through the CLI as a user runs it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import CSVDataModule, csv_table
from lightning_models.checks import ConfigError
from tests.conftest import CONFIGS, run_train
from tests.helpers import wine_csv, write_csv

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def regression_csv(path: Path, rows: int = 400) -> Path:
    """y = 2 a - b + 3 [colour = red] + noise: numeric features and a categorical one."""
    generator = np.random.default_rng(0)
    a, b = generator.normal(size=rows), generator.normal(size=rows)
    colour = generator.choice(["red", "green", "blue"], size=rows)
    y = 2 * a - b + 3 * (colour == "red") + generator.normal(scale=0.1, size=rows)
    return write_csv(path, ["a", "colour", "b", "y"], [[f"{p:.5f}", c, f"{q:.5f}", f"{t:.5f}"]
                                                       for p, c, q, t in zip(a, colour, b, y)])


def test_wine_is_read_as_a_stratified_classification_with_class_names(tmp_path):
    data = CSVDataModule(str(wine_csv(tmp_path / "wine.csv")), target="class")
    assert data.task == "classification" and data.class_names == ["class_0", "class_1", "class_2"]
    assert data.num_features == 13 and data.num_outputs == 3
    data.setup()
    splits = data.splits
    assert sum(len(targets) for _, targets in splits.values()) == 178
    assert len(splits["test"][1]) == round(178 * 0.15)
    for _, targets in splits.values():  # stratified: every split holds every class in about its share
        shares = torch.bincount(targets, minlength=3).float() / len(targets)
        assert torch.allclose(shares, torch.tensor([59, 71, 48]) / 178, atol=0.06)
    train_inputs = splits["train"][0]  # standardised with the training rows' statistics only
    assert torch.allclose(train_inputs.mean(0), torch.zeros(13), atol=1e-5)
    again = CSVDataModule(str(tmp_path / "wine.csv"), target="class")
    again.setup()
    assert torch.equal(again.splits["test"][0], splits["test"][0])  # seeded


def test_categorical_columns_are_one_hot_and_regression_is_detected(tmp_path):
    data = CSVDataModule(str(regression_csv(tmp_path / "table.csv")), target="y", categorical=["colour"],
                         standardize=False)
    assert data.task == "regression" and data.num_outputs == 1 and data.num_features == 2 + 3
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    first = data.table.inputs[0]  # a, one-hot colour (blue, green, red: sorted), b
    colours = ["blue", "green", "red"]
    assert first.tolist() == pytest.approx([float(rows[0]["a"]), *[float(rows[0]["colour"] == c) for c in colours],
                                            float(rows[0]["b"])])
    assert data.table.targets[:, 0] == pytest.approx([float(row["y"]) for row in rows])


def test_wine_trains_from_the_example_config(tmp_path):
    wine_csv(tmp_path / "wine.csv")
    done = run_train(["fit", "--config", str(CONFIGS / "examples" / "csv_classification.yaml"),
                      "--data.init_args.path", "wine.csv", "--trainer.max_epochs=15", *QUIET], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "csv_classification" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] >= 0.9  # wine is nearly linearly separable: a linear model gets there
    predicted = run_train(["predict", "--config", str(CONFIGS / "examples" / "csv_classification.yaml"),
                           "--data.init_args.path", "wine.csv", "--ckpt_path", metrics["checkpoints"]["best"], *QUIET],
                          tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    table = list(csv.DictReader((run / "predictions-test.csv").open()))
    assert {row["target_name"] for row in table} == {"class_0", "class_1", "class_2"}
    accuracy = sum(row["target"] == row["predicted"] for row in table) / len(table)
    assert accuracy == pytest.approx(metrics["test"]["test/acc"])


def test_regression_trains_from_the_example_config(tmp_path):
    regression_csv(tmp_path / "table.csv")
    done = run_train(["fit", "--config", str(CONFIGS / "examples" / "csv_regression.yaml"), "--data.init_args.path",
                      "table.csv", "--data.init_args.categorical", "[colour]", "--trainer.max_epochs=20", *QUIET], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "lightning_logs" / "csv_regression" / "version_0" / "metrics.json").read_text())
    assert metrics["test"]["test/r2"] >= 0.95  # out of reach for a model that ignores the categorical colour


@pytest.mark.parametrize(("content", "options", "named"), [
    (None, {}, "no such file"),
    ("a,b\n1,2\n3,4\n", {"target": "label"}, "the columns are a, b"),
    ("a,b,label\n1,x,0\n2,y,1\n", {}, "column 'b' is not numeric ('x' at line 2)"),
    ("a,label\n1,0\n,1\n3,0\n", {}, "line 3, column 'a' is empty or NaN"),
    ("a,label\n1,0\nnan,1\n", {}, "line 3, column 'a' is empty or NaN"),
    ("a,label\n1,yes\n2,yes\n", {}, "one class only ('yes')"),
    ("a,label\n1,0\n2\n", {}, "line 3 has 1 cells; the header has 2"),
    ("a,label\n1,x\n2,y\n", {"task": "regression"}, "needs a numeric target"),
])
def test_bad_tables_are_one_clear_error_when_the_sizes_are_read(tmp_path, content, options, named):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    data = CSVDataModule(str(path), **{"target": "label", **options})  # building reads nothing
    with pytest.raises(ConfigError) as error:
        _ = data.num_features  # what the CLI reads right after building it
    assert named in str(error.value) and str(path) in str(error.value)
    with pytest.raises(ConfigError, match=re.escape(named)):
        CSVDataModule(str(path), **{"target": "label", **options}).setup()


def test_the_file_is_read_once_and_only_when_needed(tmp_path, monkeypatch):
    reads = []
    read_rows = csv_table.read_rows
    monkeypatch.setattr(csv_table, "read_rows", lambda path: reads.append(path) or read_rows(path))
    data = CSVDataModule(str(wine_csv(tmp_path / "wine.csv")), target="class")
    assert reads == []
    assert (data.num_features, data.num_outputs, data.task) == (13, 3, "classification") and len(reads) == 1
    data.setup()
    data.setup()
    assert data.class_names == ["class_0", "class_1", "class_2"] and len(reads) == 1


@pytest.mark.parametrize(("options", "named"), [
    ({"val_fraction": 0.6, "test_fraction": 0.4}, "val_fraction + test_fraction = 1"),
    ({"test_fraction": 0.0}, "test_fraction=0.0"),
    ({"task": "ranking"}, "task='ranking'"),
])
def test_bad_options_are_refused_when_built(tmp_path, options, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        CSVDataModule(str(tmp_path / "not_read.csv"), target="label", **options)
    CSVDataModule(str(tmp_path / "not_read.csv"), target="label", split_column="split", test_fraction=0.0)  # unused


def test_a_class_too_small_to_stratify_is_one_clear_error(tmp_path):
    path = write_csv(tmp_path / "small.csv", ["a", "label"], [[index, "x" if index < 9 else "y"] for index in range(10)])
    with pytest.raises(ConfigError, match=r"small.csv: cannot split 10 rows into train/val/test .*use a split column"):
        CSVDataModule(str(path), target="label").setup()


def test_bad_table_from_the_cli_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    done = run_train(["fit", "--config", str(CONFIGS / "examples" / "csv_classification.yaml"),
                      "--data.init_args.path", "bad.csv", *QUIET], tmp_path)
    assert done.returncode == 2 and "no column 'class'; the columns are a, b" in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip() and "Seed set" not in line]
    assert len(errors) <= 2 and not (tmp_path / "lightning_logs").exists()  # the error and where --help is
