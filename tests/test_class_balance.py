"""Class imbalance in sight: each split's class rows, the majority-class baseline, the predictions, in the summary and
metrics.json; macro F1 named as such; a warning for a class never predicted; the rows dropped for missing cells."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_models import build, run
from lightning_models.callbacks import ClassBalance
from lightning_models.training.checkpoints import load_module
from lightning_models.training.train_cli import print_summary
from tests.conftest import CONFIGS
from tests.helpers import write_csv

CONFIG = CONFIGS / "examples" / "csv_classification.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.precision=32-true",
         "--trainer.max_epochs=3", "--trainer.callbacks=[]", "--trainer.logger=false"]
SIZES = {"train": {"a": 24, "b": 12, "c": 4}, "val": {"a": 7, "b": 4, "c": 3}, "test": {"a": 3, "b": 6, "c": 2}}  # test: b the most


def imbalanced_table(path: Path, constant: bool = False, gaps: tuple[int, ...] = ()) -> list[list[str]]:
    """Rows of classes a, b, c in the SIZES of each split; x tells the class apart (or, ``constant``, tells nothing:
    every row the same input); the x cell of the rows numbered in ``gaps`` left empty."""
    generator = np.random.default_rng(0)
    rows = [[f"{3.0 * 'abc'.index(label) + generator.normal():.4f}", f"{generator.normal():.4f}", split, label]
            for split, sizes in SIZES.items() for label, count in sizes.items() for _ in range(count)]
    for row in rows:
        row[:2] = ["1.0", "2.0"] if constant else row[:2]
    for index in gaps:
        rows[index][0] = ""
    write_csv(path, ["x", "noise", "split", "label"], rows)
    return rows


def options(path: Path) -> list[str]:
    return [f"--data.init_args.path={path}", "--data.init_args.target=label", "--data.init_args.split_column=split",
            "--data.init_args.batch_size=8", *QUIET]


def test_summary_and_metrics_json_give_class_rows_the_majority_baseline_and_dropped_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    gaps = (0, 30, 41, 60)  # train rows 0 (a) and 30 (b), val row 41 (a), test row 60 (b) lose their x
    table = imbalanced_table(tmp_path / "table.csv", gaps=gaps)
    result = run(CONFIG, *options(tmp_path / "table.csv"), "--data.init_args.missing=drop")
    print_summary(result)  # what train_cli prints after run()
    out, err = capsys.readouterr()
    kept = [row for index, row in enumerate(table) if index not in gaps]
    rows = {split: [Counter(row[3] for row in kept if row[2] == split)[name] for name in "abc"] for split in SIZES}
    assert rows == {"train": [23, 11, 4], "val": [6, 4, 3], "test": [3, 5, 2]}  # SIZES less the dropped rows
    recorded = json.loads((result.folder / "metrics.json").read_text())
    classes = recorded["classes"]
    assert classes["names"] == ["a", "b", "c"] and classes["rows"] == rows and classes["majority_class"] == "a"
    baseline = {split: counts[0] / sum(counts) for split, counts in rows.items()}  # always "a", the training majority
    assert classes["majority_baseline_acc"] == pytest.approx(baseline)
    assert recorded["dropped_rows"] == {"train": 2, "val": 1, "test": 1, "unsplit": 0}

    # The predictions counted are the best checkpoint's, the one the val metrics come from
    model = load_module(recorded["checkpoints"]["best"])
    data = build(CONFIG, *options(tmp_path / "table.csv"), "--data.init_args.missing=drop").datamodule
    data.setup()
    with torch.no_grad():
        guessed = torch.cat([model(inputs).argmax(1) for inputs, _ in data.val_dataloader()])
    assert classes["predicted"]["val"] == torch.bincount(guessed, minlength=3).tolist()
    assert sum(classes["predicted"]["test"]) == sum(rows["test"])

    assert "class rows train/val/test: a 23/6/3, b 11/4/5, c 4/3/2" in out
    assert (f"majority-class baseline acc (always a, the training rows' majority): train {baseline['train']:.4g}, "
            f"val {baseline['val']:.4g}, test {baseline['test']:.4g}") in out
    assert "rows dropped for a missing value: train 2, val 1, test 1, unsplit 0" in out
    f1 = result.metrics["val"]["val/f1"]
    assert f"val/f1 (macro F1)={f1:.4g}" in out and "val/acc=" in out  # the key stays f1; accuracy needs no label
    assert ("never predicted" in err) == (0 in classes["predicted"]["val"])


def test_a_class_never_predicted_on_the_validation_rows_is_warned_in_one_line(tmp_path, monkeypatch, capsys):
    """Every row the same input: the model answers one class for all, so two classes with validation rows are never
    predicted. No row was dropped, so no dropped-rows line."""
    monkeypatch.chdir(tmp_path)
    imbalanced_table(tmp_path / "table.csv", constant=True)
    result = run(CONFIG, *options(tmp_path / "table.csv"))
    print_summary(result)
    out, err = capsys.readouterr()
    predicted = result.record["classes"]["predicted"]["val"]
    assert sorted(predicted) == [0, 0, 14]
    never = [name for name, count in zip("abc", predicted) if count == 0]
    [line] = [line for line in err.splitlines() if "never predicted" in line]
    assert line == (f"warning: on the 14 validation rows the model never predicted {', '.join(never)}; compare its accuracy "
                    "with the majority-class baseline above")
    assert result.record["dropped_rows"] == {"train": 0, "val": 0, "test": 0, "unsplit": 0}
    assert "rows dropped" not in out


def test_regression_and_datamodules_without_dropped_rows_record_neither(in_tmp):
    """Float targets are not counted (no classes block); iris has no dropped_rows (no key)."""
    balance = ClassBalance()
    balance.add(None, None, "train", torch.randn(8))  # type: ignore[arg-type]  # a regression batch: ignored
    assert balance.running == {} and balance.record(None) is None  # type: ignore[arg-type]
    result = run(CONFIGS / "iris_mlp_regressor.yaml", "--trainer.max_epochs=1", *QUIET)
    assert "classes" not in result.record and "dropped_rows" not in result.record
