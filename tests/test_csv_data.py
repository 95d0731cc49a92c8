"""Bring your own table: CSVDataModule on CSV files the tests write, through the CLI as a user runs it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from datamodules import CSVDataModule, csv_table
from lightning_models import run
from lightning_models.checks import ConfigError
from tests.conftest import CONFIGS, run_train
from tests.helpers import assert_cross_validation, wine_csv, write_csv

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
    first = data.encoded.inputs[0]  # a, one-hot colour (blue, green, red: sorted), b
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
    assert {row["target"] for row in table} == {"class_0", "class_1", "class_2"}  # class names, as predict.py writes them
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
    ("a,label\n1,0\n,1\n3,0\n", {}, "1 empty or NaN cells in 1 rows (line 3, column 'a'); set missing: drop"),
    ("a,label\n1,0\nnan,1\n", {}, "1 empty or NaN cells in 1 rows (line 3, column 'a'); set missing: drop"),
    ("a,label\n1,0\n1e39,1\n", {}, "line 3, column 'a': 1e39 is beyond float32's range"),
    ("a,label\n1,0\n2,-1e39\n", {"task": "regression"}, "line 3, column 'label': -1e39 is beyond float32's range"),
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
    monkeypatch.setattr(csv_table, "read_rows", lambda path, *options: reads.append(path) or read_rows(path, *options))
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
    with pytest.raises(ConfigError, match=r"small.csv: cannot split 10 rows into train/val/test .*give the split \(a split column"):
        CSVDataModule(str(path), target="label").setup()


def test_bad_table_from_the_cli_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    done = run_train(["fit", "--config", str(CONFIGS / "examples" / "csv_classification.yaml"),
                      "--data.init_args.path", "bad.csv", *QUIET], tmp_path)
    assert done.returncode == 2 and "no column 'class'; the columns are a, b" in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip() and "Seed set" not in line]
    assert len(errors) <= 2 and not (tmp_path / "lightning_logs").exists()  # the error and where --help is


@pytest.mark.parametrize("split_column", [False, True])
def test_csv_folds_divide_the_non_test_rows_stratified_and_leave_the_test_rows(tmp_path, split_column):
    generator = np.random.default_rng(1)
    labels = ["a"] * 40 + ["b"] * 25 + ["c"] * 15  # unequal classes: each keeps its share in every fold
    splits = generator.choice(["train", "val", "test"], size=80, p=[0.6, 0.2, 0.2])
    rows = [[f"{value:.6f}", label, split] for value, label, split in zip(generator.normal(size=80), labels, splits)]
    path = write_csv(tmp_path / "table.csv", ["x", "label", "split"], rows)
    options = {"target": "label", "standardize": False, "features": ["x"],
               **({"split_column": "split", "test_fraction": 0.0} if split_column else {})}
    plain = CSVDataModule(str(path), **options)
    plain.setup()
    label_of = {float(np.float32(x)): label for x, label, _ in rows}  # rows named by their (distinct) raw value
    test = sorted(plain.splits["test"][0][:, 0].tolist())
    if split_column:
        assert test == sorted(float(np.float32(x)) for x, _, split in rows if split == "test")
    rest = sorted(set(label_of) - set(test))
    fold_rows = []
    for fold in range(4):
        data = CSVDataModule(str(path), fold=fold, folds=4, **options)
        data.setup()
        assert all(torch.equal(a, b) for a, b in zip(data.splits["test"], plain.splits["test"]))
        for split in ("train", "val"):  # each row keeps its own label
            x, y = data.splits[split]
            assert [data.class_names[index] for index in y.tolist()] == [label_of[value] for value in x[:, 0].tolist()]
        fold_rows.append(tuple(data.splits[split][0][:, 0].tolist() for split in ("train", "val")))
    assert_cross_validation(fold_rows, rest, label_of, 4)
    scaled = CSVDataModule(str(path), fold=2, folds=4, **{**options, "standardize": True})
    scaled.setup()  # statistics from the fold's training rows only
    torch.testing.assert_close(scaled.mean, torch.tensor(fold_rows[2][0]).mean(0, keepdim=True))


def test_csv_regression_folds_and_a_class_smaller_than_the_folds(tmp_path):
    path = regression_csv(tmp_path / "table.csv", rows=60)
    folds = [CSVDataModule(str(path), target="y", categorical=["colour"], fold=fold, folds=3) for fold in range(3)]
    for data in folds:
        data.setup()
    test = folds[0].splits["test"][1][:, 0].tolist()  # KFold for a numeric target: 51 non-test rows in three folds of 17
    every = [float(np.float32(row["y"])) for row in csv.DictReader(path.open())]
    vals = [value for data in folds for value in data.splits["val"][1][:, 0].tolist()]
    assert [len(data.splits["val"][1]) for data in folds] == [17] * 3 and sorted(vals) == sorted(set(every) - set(test))
    small = write_csv(tmp_path / "small.csv", ["a", "label"], [[index, "x" if index < 36 else "y"] for index in range(40)])
    with pytest.raises(ConfigError, match=r"folds=5 is more than the 3 rows of class 1"):
        CSVDataModule(str(small), target="label", fold=0).setup()


def iris_rows() -> tuple[list[str], list[list[str]]]:
    """Iris as CSV cells, the target first (a byte-order mark left in the file would hide its name)."""
    iris = load_iris()
    return ["species", *iris.feature_names], [[iris.target_names[label], *(f"{x:g}" for x in row)]
                                              for row, label in zip(iris.data, iris.target)]


def test_comma_semicolon_tab_quoted_and_bom_files_read_alike_and_train_alike(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    header, rows = iris_rows()
    for name, delimiter in (("comma", ","), ("semicolon", ";"), ("tab", "\t")):
        with open(f"{name}.csv", "w", newline="") as handle:
            csv.writer(handle, delimiter=delimiter).writerows([header, *rows])
    with open("quoted.csv", "w", newline="", encoding="utf-8-sig") as handle:  # a byte-order mark; commas inside quotes
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows([header, *[[f"Iris {row[0]}, wild", *row[1:]] for row in rows]])
    assert Path("quoted.csv").read_bytes().startswith(b'\xef\xbb\xbf"species","sepal length (cm)"')
    results = {}
    for name in ("comma", "semicolon", "tab", "quoted"):
        data = CSVDataModule(f"{name}.csv", target="species")
        data.setup()
        assert data.num_features == 4 and len(data.class_names) == 3
        results[name] = data.splits, run(CONFIGS / "examples" / "csv_classification.yaml", f"--data.init_args.path={name}.csv",
                                         "--data.init_args.target=species", "--trainer.max_epochs=2", *QUIET).metrics
    for name, (splits, metrics) in results.items():
        assert all(torch.equal(a, b) for split in splits for a, b in zip(splits[split], results["comma"][0][split])), name
        assert metrics["test"] == results["comma"][1]["test"] and metrics["val"] == results["comma"][1]["val"], name


def test_a_file_whose_delimiter_cannot_be_told_names_it_and_the_option(tmp_path):
    path = tmp_path / "spaces.csv"
    path.write_text("a b label\n1 2 x\n3 4 y\n")
    with pytest.raises(ConfigError, match=r"spaces.csv: cannot tell .*set delimiter"):
        _ = CSVDataModule(str(path), target="label").num_features
    assert CSVDataModule(str(path), target="label", delimiter=" ").table.features == ["a", "b"]
    with pytest.raises(ConfigError, match=r"delimiter=', ' is invalid"):
        CSVDataModule(str(path), target="label", delimiter=", ")
