"""Missing cells of a CSV table as a choice (``missing`` of CSVDataModule): refused in one error that counts and
locates them, dropped (counted per split), or imputed from the training rows, the fill values going into the
checkpoint so that prediction fills a missing cell as training did."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from datamodules import CSVDataModule
from lightning_models import load, run
from lightning_models.checks import ConfigError
from lightning_models.inference.prediction_inputs import PredictionInputError, encode_rows
from lightning_models.training.checkpoints import load_module
from tests.conftest import CONFIGS
from tests.helpers import write_csv

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.precision=32-true",
         "--trainer.callbacks=[]", "--trainer.logger=false", "--trainer.max_epochs=2"]
HEADER = ["a", "colour", "b", "split", "y"]


def table_with_gaps(path: Path, rows: int = 120) -> list[dict[str, str]]:
    """y = 2 a - b + [colour = red] + noise, a split column; some a, b, colour and y cells empty or NA. Returns the
    rows as the file holds them (y distinct: it names a row)."""
    generator = np.random.default_rng(3)
    a, b, y = generator.normal(size=rows), generator.normal(size=rows), generator.normal(size=rows)
    colour = generator.choice(["red", "red", "green", "blue"], size=rows)
    split = np.array(["train"] * 80 + ["val"] * 20 + ["test"] * 20)
    table = [{"a": f"{p:.4f}", "colour": str(c), "b": f"{q:.4f}", "split": str(s), "y": f"{2 * p - q + (c == 'red') + t * 0.1:.4f}"}
             for p, q, c, s, t in zip(a, b, colour, split, y)]
    for row, column, cell in [(3, "a", ""), (5, "b", "NA"), (5, "a", "nan"), (9, "colour", ""), (14, "y", ""), (30, "b", " n/a "),
                              (85, "a", ""), (90, "y", "null"), (105, "b", "NaN"), (110, "colour", "NA"), (115, "y", "")]:
        table[row][column] = cell
    write_csv(path, HEADER, [[row[name] for name in HEADER] for row in table])
    return table


def gap(cell: str) -> bool:
    return cell.strip().lower() in {"", "na", "nan", "null", "none", "n/a"}


def module(path: Path, **options) -> CSVDataModule:
    data = CSVDataModule(str(path), target="y", categorical=["colour"], split_column="split", test_fraction=0, **options)
    data.setup()
    return data


def test_refuse_is_one_error_counting_the_cells_and_rows_and_naming_the_options(tmp_path):
    table = table_with_gaps(tmp_path / "table.csv")
    cells = [(line, name) for line, row in enumerate(table, start=2) for name in HEADER if name != "split" and gap(row[name])]
    with pytest.raises(ConfigError) as error:
        _ = CSVDataModule(str(tmp_path / "table.csv"), target="y", categorical=["colour"], split_column="split").num_features
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert f"{len(cells)} empty or NaN cells in {len({line for line, _ in cells})} rows" in message == message  # 11 in 10
    assert "; ".join(f"line {line}, column {name!r}" for line, name in cells[:5]) + ", ..." in message
    assert "missing: drop" in message and "missing: impute" in message
    with pytest.raises(ConfigError, match=r"missing='keep' is not supported; choose one of \['refuse', 'drop', 'impute'\]"):
        CSVDataModule(str(tmp_path / "table.csv"), target="y", missing="keep")


def test_drop_leaves_out_the_rows_with_a_missing_cell_and_counts_them_per_split(tmp_path):
    table = table_with_gaps(tmp_path / "table.csv")
    data = module(tmp_path / "table.csv", missing="drop")
    complete = {split: [row for row in table if row["split"] == split and not any(gap(row[name]) for name in HEADER)]
                for split in ("train", "val", "test")}
    assert data.dropped_rows == {"train": 80 - len(complete["train"]), "val": 20 - len(complete["val"]),
                                 "test": 20 - len(complete["test"]), "unsplit": 0} == {"train": 5, "val": 2, "test": 3, "unsplit": 0}
    for split, rows in complete.items():  # the kept rows, each with its own values
        assert data.splits[split][1][:, 0].tolist() == pytest.approx([float(row["y"]) for row in rows])
        assert data.raw_inputs[split][:, 0].tolist() == pytest.approx([float(row["a"]) for row in rows])


def test_drop_on_a_drawn_split_counts_the_rows_without_a_target_apart_and_keeps_the_other_rows_split(tmp_path):
    table = table_with_gaps(tmp_path / "table.csv")
    options = {"target": "y", "categorical": ["colour"], "features": ["a", "colour", "b"]}
    dropped = CSVDataModule(str(tmp_path / "table.csv"), missing="drop", **options)
    imputed = CSVDataModule(str(tmp_path / "table.csv"), missing="impute", **options)
    dropped.setup(), imputed.setup()
    labelled = [row for row in table if not gap(row["y"])]
    incomplete = [row for row in labelled if any(gap(row[name]) for name in ("a", "colour", "b"))]
    counts = dropped.dropped_rows
    assert counts["unsplit"] == len(table) - len(labelled) == 3 and imputed.dropped_rows["unsplit"] == 3
    assert counts["train"] + counts["val"] + counts["test"] == len(incomplete) == 7
    for split in ("train", "val", "test"):  # the same draw, less the incomplete rows
        kept, drawn = (set(data.splits[split][1][:, 0].tolist()) for data in (dropped, imputed))
        assert kept <= drawn and len(drawn) - len(kept) == counts[split]


@pytest.mark.parametrize("strategy", ["mean", "median"])
def test_impute_fits_the_fill_values_on_the_training_rows_and_stores_them(tmp_path, strategy):
    table = table_with_gaps(tmp_path / "table.csv")
    data = module(tmp_path / "table.csv", missing="impute", impute_numbers=strategy)
    train = [row for row in table if row["split"] == "train" and not gap(row["y"])]
    average = np.mean if strategy == "mean" else np.median
    expected = {name: float(average([float(row[name]) for row in train if not gap(row[name])])) for name in ("a", "b")}
    colours = [row["colour"] for row in train if not gap(row["colour"])]
    expected["colour"] = max(set(colours), key=colours.count)
    fill = data.prediction_inputs()["fill"]
    assert fill == pytest.approx(expected) and fill["colour"] == "red" and isinstance(fill["a"], float)
    assert data.dropped_rows == {"train": 1, "val": 1, "test": 1, "unsplit": 0}  # the rows without a target only
    test = [row for row in table if row["split"] == "test" and not gap(row["y"])]
    raw = data.raw_inputs["test"]  # columns a, colour=blue, green, red, b
    for index, row in enumerate(test):
        assert raw[index, 0].item() == pytest.approx(fill["a"] if gap(row["a"]) else float(row["a"]), abs=1e-6)
        assert raw[index, 4].item() == pytest.approx(fill["b"] if gap(row["b"]) else float(row["b"]), abs=1e-6)
        colour = fill["colour"] if gap(row["colour"]) else row["colour"]
        assert raw[index, 1:4].tolist() == [float(colour == level) for level in ("blue", "green", "red")]


def test_prediction_imputes_as_training_did(tmp_path, monkeypatch):
    """Parity: the model on the datamodule's test split equals load(checkpoint).predict on the same raw rows, NA
    cells included, as dicts, as the CSV file's rows, with None and NaN for missing values."""
    monkeypatch.chdir(tmp_path)
    table = table_with_gaps(tmp_path / "table.csv")
    options = ["--data.init_args.path=table.csv", "--data.init_args.categorical=[colour]", "--data.init_args.split_column=split",
               "--data.init_args.test_fraction=0", "--data.init_args.missing=impute", "--data.init_args.impute_numbers=median"]
    result = run(CONFIGS / "examples" / "csv_regression.yaml", *options, *QUIET)
    checkpoint = Path(result.checkpoints["best"])
    data = module(tmp_path / "table.csv", missing="impute", impute_numbers="median")
    expected = load_module(checkpoint)(data.splits["test"][0]).detach().numpy()
    test = [row for row in table if row["split"] == "test" and not gap(row["y"])]
    assert any(gap(row[name]) for row in test for name in ("a", "b", "colour"))
    write_csv(tmp_path / "new.csv", HEADER, [[row[name] for name in HEADER] for row in test])
    (tmp_path / "table.csv").unlink()  # the checkpoint alone

    predictor = load(checkpoint)
    np.testing.assert_allclose(predictor.predict(test).outputs, expected, atol=1e-5)
    np.testing.assert_allclose(predictor.predict(tmp_path / "new.csv").outputs, expected, atol=1e-5)
    as_python = [{name: (float("nan") if name != "colour" else None) if gap(row[name]) else row[name] for name in HEADER}
                 for row in test]
    np.testing.assert_allclose(predictor.predict(as_python).outputs, expected, atol=1e-5)


def test_missing_level_makes_a_missing_category_a_level_of_its_own(tmp_path):
    table = table_with_gaps(tmp_path / "table.csv")
    for row in table:  # numbers and targets complete: only colour has gaps, in training and test rows
        row.update({name: "0.5" for name in ("a", "b", "y") if gap(row[name])})
    write_csv(tmp_path / "table.csv", HEADER, [[row[name] for name in HEADER] for row in table])
    data = module(tmp_path / "table.csv", missing_level=True)  # missing: refuse, and nothing to refuse
    spec = data.prediction_inputs()
    assert spec["categorical"] == {"colour": ["(missing)", "blue", "green", "red"]} and spec["missing_level"] == "(missing)"
    test = [row for row in table if row["split"] == "test"]
    index = next(i for i, row in enumerate(test) if gap(row["colour"]))
    assert data.raw_inputs["test"][index, 1:5].tolist() == [1.0, 0.0, 0.0, 0.0]
    rows = [{"a": 0.1, "b": 0.2, "colour": value} for value in (None, "", "NA", "(missing)")]
    assert (encode_rows(rows, spec, 0)[:, 1:5] == [1.0, 0.0, 0.0, 0.0]).all()


def test_a_checkpoint_without_fill_values_still_predicts_and_refuses_a_missing_cell(tmp_path):
    spec = {"kind": "table", "features": ["a", "colour"], "categorical": {"colour": ["blue", "red"]}}  # an older checkpoint's
    assert encode_rows([{"a": "1.5", "colour": "red"}], spec, 0).tolist() == [[1.5, 0.0, 1.0]]
    with pytest.raises(PredictionInputError, match=re.escape("row 0, column 'a': '' is not a number.")):
        encode_rows([{"a": "", "colour": "red"}], spec, 0)
    filled = {**spec, "fill": {"a": 2.25, "colour": "blue"}}
    assert encode_rows([{"a": " NA ", "colour": None}], filled, 0).tolist() == [[2.25, 1.0, 0.0]]


def test_impute_refuses_a_column_the_training_rows_never_fill(tmp_path):
    rows = [[("" if split == "train" else "1.0"), f"{index}", split] for index, split in enumerate(["train"] * 6 + ["test"] * 2)]
    path = write_csv(tmp_path / "empty.csv", ["a", "y", "split"], rows)
    with pytest.raises(ConfigError, match=r"column 'a' has no value in the training rows, so missing: impute has nothing"):
        _ = CSVDataModule(str(path), target="y", split_column="split", test_fraction=0, missing="impute").num_features
