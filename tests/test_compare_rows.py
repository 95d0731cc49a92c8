"""compare refuses what it cannot judge: metrics measured on other rows (folds against a split, another fold, another
share, split seed or data file), train/* (no better or worse), a metric one side lacks, a file given as a side."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy import stats

from lightning_models.workflows.compare import CompareError, compare
from tests.conftest import ROOT
from tests.helpers import IRIS, run_script

SCRIPT = ROOT / "scripts" / "compare.py"
A_VAL, B_VAL = [0.40, 0.42, 0.41, 0.43, 0.44], [0.20, 0.21, 0.19, 0.22, 0.20]  # B's val/loss clearly lower
A_TEST, B_TEST = [0.80, 0.82, 0.81, 0.80, 0.83], [0.90, 0.91, 0.92, 0.90, 0.93]  # B's test/acc clearly higher


def run_folder(folder: Path, seed: int, metrics: dict[str, float], data: dict[str, Any] | None = None) -> Path:
    """A run folder as run() leaves one: metrics.json by stage, and the resolved config.yaml (the data keys that
    decide the rows, with the CSV datamodule's defaults unless ``data`` says otherwise)."""
    folder.mkdir(parents=True)
    blocks = {stage: {key: value for key, value in metrics.items() if key.startswith(stage + "/")} for stage in ("train", "val", "test")}
    (folder / "metrics.json").write_text(json.dumps({"seed": seed, **blocks}))
    init = {"path": "/data/table.csv", "target": "label", "split_column": None, "val_fraction": 0.15, "test_fraction": 0.15,
            "seed": 0, "fold": None, "folds": 5, **(data or {})}
    config = {"seed_everything": seed, "model": {"init_args": {"loss": "cross_entropy"}},
              "data": {"class_path": "datamodules.CSVDataModule", "init_args": init},
              "trainer": {"logger": {"init_args": {"version": folder.name}}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def metrics(index: int, val: list[float], test: list[float], **more: float) -> dict[str, float]:
    return {"val/loss": val[index], "test/acc": test[index], "train/loss": val[index] / 2, **more}


def seeds_side(folder: Path, val: list[float] = A_VAL, test: list[float] = A_TEST, **data: Any) -> Path:
    for seed in range(5):
        run_folder(folder / f"seed_{seed}", seed, metrics(seed, val, test), data)
    return folder


def crossval_side(folder: Path, val: list[float] = B_VAL, test: list[float] = B_TEST, folds: range = range(5),
                  **data: Any) -> Path:
    """A cross-validation folder as crossval() writes one: fold_<k> run folders (their config.yaml holds the fold),
    crossval.yaml and summary.json beside them."""
    runs = [run_folder(folder / f"fold_{fold}", 0, metrics(fold, val, test), {**data, "fold": fold, "folds": 5}) for fold in folds]
    (folder / "crossval.yaml").write_text(yaml.safe_dump({"config": "configs/table.yaml", "folds": 5, "seeds": [0], "extra": []}))
    written = [{"fold": fold, "seed": 0, "folder": str(run)} for fold, run in zip(folds, runs)]
    (folder / "summary.json").write_text(json.dumps({"runs": written}))
    return folder


def verdicts(*sides: Path) -> dict[str, str]:
    return {row.metric: row.verdict for row in compare(*sides).rows}


def test_folds_against_a_split_are_not_comparable_on_val_and_train_but_test_is_judged(tmp_path):
    said = verdicts(seeds_side(tmp_path / "runs"), crossval_side(tmp_path / "crossval"))
    assert said["val/loss"] == "not comparable: the validation rows differ (data.init_args.fold: null in A, 0, 1, 2, 3, 4 in B)"
    assert said["train/loss"] == "not comparable: the training rows differ (data.init_args.fold: null in A, 0, 1, 2, 3, 4 in B)"
    assert stats.ttest_ind(B_TEST, A_TEST, equal_var=False).pvalue < 0.05 and said["test/acc"] == "better"  # same test rows


@pytest.mark.parametrize(("key", "a", "b", "stages"), [
    ("val_fraction", 0.15, 0.25, ("val", "train")),
    ("test_fraction", 0.15, 0.3, ("test", "val", "train")),  # the validation rows are drawn from what the test leaves
    ("seed", 0, 1, ("test", "val", "train")),
    ("path", "/data/table.csv", "/data/other.csv", ("test", "val", "train")),
    ("split_column", None, "split", ("test", "val", "train")),
])
def test_another_split_is_not_comparable_where_it_moves_the_rows(tmp_path, key, a, b, stages):
    said = verdicts(seeds_side(tmp_path / "a", **{key: a}), seeds_side(tmp_path / "b", B_VAL, B_TEST, **{key: b}))
    texts = {None: "null", 0.15: "0.15", 0.25: "0.25", 0.3: "0.3", 0: "0", 1: "1"}
    named = f"(data.init_args.{key}: {texts.get(a, a)} in A, {texts.get(b, b)} in B)"
    for metric, stage in (("test/acc", "test"), ("val/loss", "val"), ("train/loss", "train")):
        rows = {"test": "test", "val": "validation", "train": "training"}[stage]
        expected = f"not comparable: the {rows} rows differ {named}" if stage in stages else {"test": "better", "val": "better",
                                                                                                "train": "fit"}[stage]
        assert said[metric] == expected, metric


def test_another_fold_is_not_comparable_and_the_same_folds_pair(tmp_path):
    one = verdicts(crossval_side(tmp_path / "a", A_VAL, A_TEST, folds=range(0, 1)), crossval_side(tmp_path / "b", folds=range(1, 2)))
    assert one["val/loss"] == "not comparable: the validation rows differ (data.init_args.fold: 0 in A, 1 in B)"
    assert one["test/acc"].startswith("too few runs")  # one run a side: the test rows agree, n=1 says the rest
    # Two cross-validations on the same folds: paired by fold. Their val_fraction differs, but a fold ignores it.
    rows = {row.metric: row for row in compare(crossval_side(tmp_path / "c", A_VAL, A_TEST, val_fraction=0.15),
                                               crossval_side(tmp_path / "d", val_fraction=0.3)).rows}
    assert rows["val/loss"].test == "paired t (n=5 pairs)" and rows["val/loss"].verdict == "better"
    assert rows["val/loss"].p_value == pytest.approx(stats.ttest_rel(B_VAL, A_VAL).pvalue)


def test_the_same_values_combined_otherwise_are_other_rows(tmp_path):
    for side, pairs in (("a", ((0, 0), (1, 1))), ("b", ((0, 1), (1, 0)))):  # (fold, data seed) per run
        for fold, seed in pairs:
            run_folder(tmp_path / side / f"fold_{fold}", 0, metrics(fold, A_VAL, A_TEST), {"fold": fold, "seed": seed})
    said = verdicts(tmp_path / "a", tmp_path / "b")
    assert said["val/loss"] == ("not comparable: the validation rows differ (the same values of data.init_args.seed, "
                                "data.init_args.fold, combined otherwise)")


def test_a_run_without_its_config_yaml_has_unknown_rows(tmp_path):
    a, b = seeds_side(tmp_path / "a"), seeds_side(tmp_path / "b", B_VAL, B_TEST)
    (b / "seed_3" / "config.yaml").unlink()
    unknown = f"not comparable: {b / 'seed_3'} has no config.yaml to tell its rows"
    assert all(verdict.startswith(unknown) for verdict in verdicts(a, b).values())


def test_train_metrics_are_fit_with_their_difference_and_never_a_win(tmp_path):
    a, b = seeds_side(tmp_path / "a"), seeds_side(tmp_path / "b", B_VAL, B_TEST)
    result = compare(a, b)
    train = next(row for row in result.rows if row.metric == "train/loss")
    differences = [(y - x) / 2 for x, y in zip(A_VAL, B_VAL)]
    assert train.verdict == "fit" and train.difference == pytest.approx(statistics.fmean(differences))
    assert train.high < 0 and train.test == "paired t (n=5 pairs)"  # lower beyond doubt, still no verdict
    summary = next(line for line in result.markdown().splitlines() if line.startswith("- B against A"))
    assert summary == "- B against A: better on test/acc, val/loss; fit (no verdict) on train/loss."


def test_a_metric_on_one_side_only_is_listed_not_dropped(tmp_path):
    a = seeds_side(tmp_path / "a")
    for seed in range(5):
        run_folder(tmp_path / "b" / f"seed_{seed}", seed, {"val/loss": B_VAL[seed], "test/acc": B_TEST[seed], "test/auroc": 0.9})
    result = compare(a, tmp_path / "b")
    rows = {row.metric: row for row in result.rows}
    assert rows["train/loss"].verdict == "only in A" and rows["train/loss"].counts == (5, 0)
    assert rows["test/auroc"].verdict == "only in B" and rows["test/auroc"].means[1] == pytest.approx(0.9)
    written = {row["metric"]: row["verdict"] for row in csv.DictReader(io.StringIO(result.csv()))}
    assert written == {"test/acc": "better", "val/loss": "better", "train/loss": "only in A", "test/auroc": "only in B"}
    train = [value / 2 for value in A_VAL]
    cell = f"A: {statistics.fmean(train):.4g} ± {statistics.stdev(train):.4g} (5)"
    assert f"| train/loss | lower | {cell} | B: n/a (0) |" in result.markdown()
    assert "only on one side: train/loss (A), test/auroc (B)" in result.markdown()


def test_a_file_as_a_side_is_one_line_naming_it_and_what_is_accepted(tmp_path, monkeypatch):
    a = seeds_side(tmp_path / "a")
    (tmp_path / "table.csv").write_text("x,label\n1,0\n")
    accepted = "a run folder (it holds metrics.json), a folder of runs, a cross-validation folder, or a config .yaml to train"
    for side, says in (("table.csv", f"side B: table.csv is a file; a side is {accepted}"),
                       (str(a / "seed_0" / "metrics.json"), f"side B: {a / 'seed_0' / 'metrics.json'} is a file: give its folder, "
                                                            f"{a / 'seed_0'}"),
                       ("nowhere", f"side B: nowhere: no such folder; a side is {accepted}")):
        refused = run_script(SCRIPT, str(a), side, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.strip() == f"error: {says}", refused.stderr
    monkeypatch.chdir(tmp_path)  # a config side A and a bad side B: refused before A trains
    with pytest.raises(CompareError, match="side B: table.csv is a file"):
        compare(IRIS, "table.csv", seeds=[0], options=["--trainer.max_epochs=1"])
    assert not (tmp_path / "lightning_logs").exists()


def test_vary_split_beside_a_sides_own_split_seed_is_refused_and_the_split_seed_is_the_resolved_one(tmp_path, monkeypatch):
    from lightning_models import build
    from lightning_models.workflows.seeds import seed_options

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CompareError, match=r"^side B: --vary-split sets data.init_args.seed per seed, and "
                                           r"--data.init_args.seed=7 sets it too; drop one$"):
        compare(IRIS, [IRIS, "--data.init_args.seed=7"], seeds=[0], vary_split=True)
    assert not (tmp_path / "lightning_logs").exists()
    config = build(IRIS, "--data.init_args.seed=7").config  # the split seed as the options resolve it, not the file's
    assert seed_options(2, config, vary_split=True) == ["--seed_everything=2", "--data.init_args.seed=9"]
