"""scripts/compare.py and lightning_models.compare: the config keys that differ, per-metric verdicts recomputed
with scipy from the runs' metrics.json, pairing by seed, and one-line refusals."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
import yaml
from scipy import stats

from lightning_models.workflows.compare import compare, direction
from tests.conftest import ROOT
from tests.helpers import IRIS, LR, run_script

SCRIPT = ROOT / "scripts" / "compare.py"


def fake_run(folder: Path, seed: int, metrics: dict[str, float], lr: float = 0.003, fold: int | None = None) -> Path:
    """A run folder as run() leaves one: metrics.json (by stage) and config.yaml."""
    folder.mkdir(parents=True)
    blocks = {stage: {key: value for key, value in metrics.items() if key.startswith(stage + "/")} for stage in ("train", "val", "test")}
    (folder / "metrics.json").write_text(json.dumps({"seed": seed, **blocks}))
    config = {"seed_everything": seed, "model": {"init_args": {"optimizer": {"init_args": {"lr": lr}}, "hidden": [16]}},
              "data": {"init_args": {"fold": fold, "seed": 0}},
              "trainer": {"logger": {"init_args": {"version": folder.name}}, "max_epochs": 8}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


A_ACC, B_ACC = [0.90, 0.92, 0.91, 0.93, 0.90], [0.93, 0.95, 0.92, 0.96, 0.94]
A_LOSS, B_LOSS = [0.30, 0.28, 0.31, 0.27, 0.29], [0.30, 0.27, 0.32, 0.26, 0.30]


def two_sides(tmp_path: Path, b_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> tuple[Path, Path]:
    for seed in range(5):
        fake_run(tmp_path / "a" / f"seed_{seed}", seed, {"test/acc": A_ACC[seed], "test/loss": A_LOSS[seed]})
    for index, seed in enumerate(b_seeds):
        fake_run(tmp_path / "b" / f"seed_{seed}", seed, {"test/acc": B_ACC[index], "test/loss": B_LOSS[index]}, lr=0.03)
    return tmp_path / "a", tmp_path / "b"


def test_paired_by_seed_the_numbers_are_scipys_ttest_rel(tmp_path):
    result = compare(*two_sides(tmp_path))
    assert result.differing == {"model.init_args.optimizer.init_args.lr": ["0.003", "0.03"]}  # seeds, folders: alike
    rows = {row.metric: row for row in result.rows}
    acc, loss = rows["test/acc"], rows["test/loss"]
    differences = [b - a for a, b in zip(A_ACC, B_ACC)]
    mean = statistics.fmean(differences)
    half = stats.t.ppf(0.975, 4) * statistics.stdev(differences) / 5**0.5  # the t interval by its formula
    assert acc.difference == pytest.approx(mean) and (acc.low, acc.high) == pytest.approx((mean - half, mean + half))
    assert acc.p_value == pytest.approx(stats.ttest_rel(B_ACC, A_ACC).pvalue)
    assert acc.stds == pytest.approx((statistics.stdev(A_ACC), statistics.stdev(B_ACC))) and acc.counts == (5, 5)
    assert acc.test == "paired t (n=5 pairs)" and acc.verdict == "better"
    assert loss.verdict == "no detectable difference at n=5" and loss.low < 0 < loss.high


def test_unpaired_sides_get_welch_and_lower_loss_is_better(tmp_path):
    a, b = two_sides(tmp_path, b_seeds=(5, 6, 7, 8, 9))  # no shared seeds: nothing to pair
    for seed, folder in enumerate(sorted(b.iterdir())):  # B's loss clearly lower
        record = json.loads((folder / "metrics.json").read_text())
        record["test"]["test/loss"] = 0.1 + seed / 1000
        (folder / "metrics.json").write_text(json.dumps(record))
    rows = {row.metric: row for row in compare(a, b).rows}
    b_loss = [0.1 + seed / 1000 for seed in range(5)]
    welch = stats.ttest_ind(b_loss, A_LOSS, equal_var=False)
    va, vb = statistics.variance(A_LOSS) / 5, statistics.variance(b_loss) / 5
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)  # Welch–Satterthwaite, by hand
    half = stats.t.ppf(0.975, df) * (va + vb) ** 0.5
    diff = statistics.fmean(b_loss) - statistics.fmean(A_LOSS)
    assert rows["test/loss"].test == "Welch t" and rows["test/loss"].p_value == pytest.approx(welch.pvalue)
    assert (rows["test/loss"].low, rows["test/loss"].high) == pytest.approx((diff - half, diff + half))
    assert rows["test/loss"].verdict == "better"
    assert compare(a, b).differing["seed_everything"] == ["0, 1, 2, 3, 4", "5, 6, 7, 8, 9"]


def test_directions():
    assert [direction(m) for m in ("val/loss", "test/mse", "test/max_abs_error", "test/acc", "val/f1", "test/r2",
                                   "train/updates")] == ["lower", "lower", "", "higher", "higher", "higher", ""]


def test_the_script_writes_markdown_csv_and_png_and_refuses_in_one_line(tmp_path):
    a, b = two_sides(tmp_path)
    done = run_script(SCRIPT, str(a), str(b), "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "out" / "compare.md").read_text()
    assert table in done.stdout and "| `model.init_args.optimizer.init_args.lr` | 0.003 | 0.03 |" in table
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "compare.csv").read_text())))
    assert [(row["metric"], row["verdict"]) for row in rows] == [("test/acc", "better"), ("test/loss", "no detectable difference at n=5")]
    assert (tmp_path / "out" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    for args, says in (([str(a)], "at least two sides"), ([str(a), "nowhere"], "nowhere: no such folder"),
                       ([str(a), str(tmp_path / "out")], "no metrics.json in it or under it"),
                       ([str(a), str(b), "--seeds", "2-1"], "--seeds '2-1'")):
        refused = run_script(SCRIPT, *args, cwd=tmp_path)
        errors = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and len(errors) == 1 and says in errors[0], refused.stderr


@pytest.mark.slow
def test_iris_lr_over_seeds_run_now_matches_scipy_on_the_metrics_json(tmp_path):
    """Two configs run now over three seeds: every row is scipy's ttest_rel on the runs' own metrics.json."""
    sides = [f"{IRIS} --{LR}={lr}" for lr in (0.003, 0.03)]
    done = run_script(SCRIPT, *sides, "--seeds", "0-2", "--out", "out", "--", "--trainer.max_epochs=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "lightning_logs" / "iris_mlp_classifier" / "compare"
    records = {side: [json.loads((folder / side / f"seed_{seed}" / "metrics.json").read_text()) for seed in range(3)]
               for side in "AB"}
    assert [record["seed"] for record in records["A"]] == [0, 1, 2]
    rows = {row["metric"]: row for row in csv.DictReader(io.StringIO((tmp_path / "out" / "compare.csv").read_text()))}
    for metric in ("test/acc", "test/loss", "val/loss"):
        a, b = ([record[metric.split("/")[0]][metric] for record in records[side]] for side in "AB")
        result = stats.ttest_rel(b, a)
        interval = result.confidence_interval(0.95)
        assert float(rows[metric]["difference_b_minus_a"]) == pytest.approx(statistics.fmean(b) - statistics.fmean(a))
        if statistics.pstdev([y - x for x, y in zip(a, b)]) > 0:
            assert float(rows[metric]["low_95"]) == pytest.approx(interval.low)
            assert float(rows[metric]["high_95"]) == pytest.approx(interval.high)
    assert "| `model.init_args.optimizer.init_args.lr` | 0.003 | 0.03 |" in done.stdout
    assert (tmp_path / "out" / "curves.png").is_file()


def test_metrics_of_different_things_get_no_verdict(tmp_path):
    """Another loss function makes */loss numbers of different things (other rows: tests/test_compare_rows.py)."""
    a, b = two_sides(tmp_path)
    for folder in b.iterdir():
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["model"]["init_args"]["loss"] = "mse_onehot"
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    rows = {row.metric: row for row in compare(a, b).rows}
    assert rows["test/loss"].verdict == "not comparable: model.init_args.loss differs"
    assert rows["test/acc"].verdict == "better"  # accuracy means the same under either loss
