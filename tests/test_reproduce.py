"""lab/reproduce.py in quick mode on the iris and synthetic experiments, its resumption and refusals, and the generated-table check."""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import ledger
import numpy as np
import pytest
import reproduce
import yaml
from tables import check_tables

from lightning_models.training.experiments import EXPERIMENTS, parse_seeds
from tests.conftest import ROOT

REPRODUCE = ROOT / "lab" / "reproduce.py"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("reproduce")
    done = subprocess.run([sys.executable, str(REPRODUCE), "--quick", "--only", "iris,synthetic",
                           "--accelerator", "cpu", "--out", "reports"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path


@pytest.mark.slow
def test_quick_reproduce_writes_a_complete_report(quick_report):
    tmp_path = quick_report
    report = json.loads((tmp_path / "reports" / "RESULTS.json").read_text())
    wanted = [e.name for e in EXPERIMENTS if e.group in ("iris", "synthetic")]
    assert [row["name"] for row in report["experiments"]] == [e.name for e in EXPERIMENTS]  # every row, run or not
    assert [row["name"] for row in report["experiments"] if row["default"]] == wanted
    records = ledger.load(tmp_path / "reports" / "runs")
    assert all(r["options"][:len(ledger.QUICK)] == ledger.QUICK and r["versions"]["torch"] for r in records.values())
    assert report["meta"]["records"] == len(records) == sum(2 if row["source_keys"] else 1 for row in report["experiments"]
                                                             if row["name"] in wanted)
    for row in (row for row in report["experiments"] if row["name"] in wanted):
        recipes = ["default"] + (["source"] if row["source_keys"] else [])
        for recipe in recipes:
            result = row[recipe]
            assert all(isinstance(v, float) for v in result["values"].values()), (row["name"], recipe, result)
            assert result["run_dir"].startswith("lightning_logs/")  # relative to the working folder: no machine path
            assert (tmp_path / result["run_dir"] / "metrics.json").is_file()
        if row["sklearn_key"]:
            assert isinstance(row["default"]["sklearn"], float)
    table = (tmp_path / "reports" / "RESULTS.md").read_text()
    for name in wanted:  # one table row each, with numbers in its result cells and a run link
        line = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert re.fullmatch(r"-?\d+\.\d+( / -?\d+\.\d+)?", cells[6]), line
        assert "](../lightning_logs/" in cells[9]


def test_generated_tables_are_the_committed_report_and_registry(tmp_path):
    """README.md's experiments table and docs/results.md's results table are what the generator writes, and the
    check notices a hand edit in either."""
    report, readme, results = ROOT / "reports" / "RESULTS.json", ROOT / "README.md", ROOT / "docs" / "results.md"
    assert check_tables(report, readme, results, EXPERIMENTS, update=False) == 0
    for path, marker, edit in ((results, "<!-- results table", lambda line: re.sub(r"\d\.\d{3}", "0.123", line, count=1)),
                               (readme, "<!-- experiments table", lambda line: line.replace("`MLP`", "`Net`"))):
        text = path.read_text()
        row = text.index("| `iris_mlp_classifier` |", text.index(marker))
        end = text.index("\n", row)
        assert edit(text[row:end]) != text[row:end]
        edited = tmp_path / path.name
        edited.write_text(text[:row] + edit(text[row:end]) + text[end:])
        pages = {readme: readme, results: results, path: edited}
        assert check_tables(report, pages[readme], pages[results], EXPERIMENTS, update=False) == 1, path


@pytest.mark.slow
def test_a_rerun_runs_only_what_is_missing_or_stale(tmp_path):
    """Kill it and rerun: the records written stay, only the missing run runs again."""
    def reproduce_(*options: str) -> str:
        done = subprocess.run([sys.executable, str(REPRODUCE), "--quick", "--accelerator", "cpu", "--jobs", "2",
                               "--out", "reports", *options], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    assert "2 runs missing or stale" in reproduce_("--only", "xor_mlp,exp_linear_sgd")
    runs = tmp_path / "reports" / "runs"
    first = ledger.load(runs)
    assert "0 runs missing or stale" in reproduce_("--only", "xor_mlp,exp_linear_sgd")
    ledger.path_of(runs, "exp_linear_sgd", "default", 0).unlink()  # as if killed before it finished
    printed = reproduce_("--only", "xor_mlp,exp_linear_sgd")
    assert "1 runs missing or stale" in printed and "[1/1] exp_linear_sgd default seed 0" in printed, printed
    second = ledger.load(runs)
    assert second[("xor_mlp", "default", 0)] == first[("xor_mlp", "default", 0)]
    assert second[("exp_linear_sgd", "default", 0)]["run_dir"].endswith("version_1")  # re-run: a new version
    assert "`exp_linear_sgd`" in (tmp_path / "reports" / "RESULTS.md").read_text()


def fake_reproduce(experiments, args, fake, runs: Path) -> dict:
    reproduce.execute(reproduce.plan(experiments, args, {}), args, runs, {}, runner=fake)
    return {row["name"]: row for row in ledger.results(experiments, ledger.load(runs))["experiments"]}


def result(metrics: dict, folder: Path, seed: int = 0) -> SimpleNamespace:
    """What run() returns, as far as the lab reads it."""
    return SimpleNamespace(metrics=metrics, folder=folder, record={"epochs": 3, "global_step": 3, "precision": "32-true",
                                                                    "versions": {"torch": "x"}})


def test_seeds_give_mean_std_min_max_and_a_verdict_from_a_fake_runner(tmp_path):
    """Statistics and verdicts on known values: a fake runner returns seed-dependent metrics."""
    import statistics

    from tables import table

    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("0,2,5") == [0, 2, 5] and parse_seeds("3") == [3]
    for bad in ("4-0", "a", "1-", ""):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)
    by_name = {e.name: e for e in EXPERIMENTS}
    planted = {  # seed -> source-recipe val/recon_mse; text 000 reports 0.0937
        "iris_autoencoder": {0: 0.132, 1: 0.090, 2: 0.101},
        "iris_mlp_regressor": {0: 0.060, 1: 0.055, 2: 0.070},  # text: 0.0492, outside 0.055..0.070
    }
    seen: list[list[str]] = []

    def fake(config, overrides):
        seen.append(overrides)
        seed = int(next(o for o in overrides if o.startswith("--seed_everything=")).split("=")[1])
        name = config.stem
        recipe = "source" if config.parent.name == "source" else "default"
        mse = planted[name][seed] if recipe == "source" else 0.05 + seed / 100
        metrics = {"train": {"train/mse": mse, "train/recon_mse": mse}, "val": {"val/mse": mse, "val/recon_mse": mse},
                   "test": {"test/r2": 0.9 - seed / 100, "test/recon_mse": mse}}
        return result(metrics, tmp_path / f"{name}_{recipe}_{seed}")

    args = argparse.Namespace(quick=False, accelerator="cpu", seeds="0-2", data_dir=None, vary_split=False, jobs=1)
    rows = fake_reproduce([by_name["iris_autoencoder"], by_name["iris_mlp_regressor"]], args, fake, tmp_path / "runs")
    assert len(seen) == 2 * 2 * 3  # 2 experiments x 2 recipes x 3 seeds
    # a seed is the run's seed alone: the split (the datamodule's seed) stays
    assert {o for overrides in seen for o in overrides if "seed" in o} == {f"--seed_everything={s}" for s in range(3)}
    assert source["n"]["val/recon_mse"] == 3 if (source := rows["iris_autoencoder"]["source"]) else False
    source = rows["iris_autoencoder"]["source"]
    values = list(planted["iris_autoencoder"].values())
    assert source["per_seed"]["val/recon_mse"] == values
    assert source["values"]["val/recon_mse"] == pytest.approx(statistics.fmean(values))
    assert source["std"]["val/recon_mse"] == pytest.approx(statistics.stdev(values))
    assert (source["min"]["val/recon_mse"], source["max"]["val/recon_mse"]) == (0.090, 0.132)
    assert source["seeds"] == [0, 1, 2] and len(source["wall_times_s"]) == 3 and len(source["run_dirs"]) == 3
    assert len(list((tmp_path / "runs").glob("*.json"))) == 12 and not list((tmp_path / "runs").glob("*.tmp"))
    assert rows["iris_autoencoder"]["verdict"] == "reproduced"  # 0.0937 within 0.090..0.132
    assert rows["iris_mlp_regressor"]["verdict"] == "differs"  # 0.0492 below 0.055
    assert "0.055..0.07" in rows["iris_mlp_regressor"]["verdict_reason"]
    default = rows["iris_mlp_regressor"]["default"]
    assert default["values"]["test/r2"] == pytest.approx(0.89) and default["std"]["test/r2"] == pytest.approx(0.01)
    rendered = table(list(rows.values()))
    line = next(line for line in rendered.splitlines() if line.startswith("| `iris_mlp_regressor` |"))
    assert "| differs |" in line and "0.0617 ± 0.0076" in line and "0.8900 ± 0.0100" in line


@pytest.mark.slow
def test_pictures_are_the_panels_of_the_report_runs(quick_report, tmp_path):
    from PIL import Image

    from lab.pictures import PICTURES, last_image

    done = subprocess.run([sys.executable, str(ROOT / "lab" / "pictures.py"), "--report",
                           str(quick_report / "reports" / "RESULTS.json"), "--out", str(tmp_path), "--width", "300"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1  # the report has no Fashion-MNIST runs: those two are named, the rest written
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == [
        f"skipped {name}" for name, experiment, _ in PICTURES if experiment == "fashion_cnn"]
    report = json.loads((quick_report / "reports" / "RESULTS.json").read_text())
    runs = {row["name"]: quick_report / row["default"]["run_dirs"][0] for row in report["experiments"] if row["default"]}
    for name, experiment, tag in PICTURES:
        if experiment == "fashion_cnn":
            continue
        written = Image.open(tmp_path / name).convert("RGB")
        logged = Image.open(io.BytesIO(last_image(runs[experiment], tag))).convert("RGB")
        assert written.width == min(300, logged.width)
        assert written.height == pytest.approx(logged.height * written.width / logged.width, abs=1)
        # the same picture, pixel by pixel (resampling and the 128-colour palette blur it a little)
        shrunk = np.asarray(logged.resize(written.size), float)
        assert np.abs(np.asarray(written, float) - shrunk).mean() < 8, name


def test_readme_images_exist():
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert len(images) >= 8
    missing = [image for image in images if not (ROOT / image).is_file()]
    assert not missing, f"README shows missing images: {missing} (python lab/pictures.py)"
    for image in images:
        assert (ROOT / image).read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_quick_reproduce_runs_the_fashion_rows_on_tiny_idx_files(tmp_path):
    from tests.helpers import write_idx

    data = write_idx(tmp_path / "tiny", train=300, test=64)
    done = subprocess.run([sys.executable, str(REPRODUCE), "--quick", "--only", "fashion",
                           "--accelerator", "cpu", "--data-dir", str(data), "--out", "reports"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [row for row in json.loads((tmp_path / "reports" / "RESULTS.json").read_text())["experiments"] if row["default"]]
    assert [row["name"] for row in rows] == [e.name for e in EXPERIMENTS if e.group == "fashion"]
    for row in rows:
        for recipe in ("default", "source"):
            result = row[recipe]
            metrics = json.loads((tmp_path / result["run_dir"] / "metrics.json").read_text())
            for key, mean in result["values"].items():  # the row's numbers are its run's (one seed in quick mode)
                assert mean == pytest.approx(metrics[key.split("/")[0]][key]), (row["name"], recipe, key)
            batch = yaml.safe_load((tmp_path / result["run_dir"] / "config.yaml").read_text())["data"]["init_args"]["batch_size"]
            assert metrics["global_step"] == 2 * min(5, math.ceil((300 - 64) / batch))  # quick: 2 epochs, <= 5 batches


def test_vary_split_moves_the_datamodule_seed_with_the_run_seed(tmp_path):
    seen: list[list[str]] = []

    def fake(config, overrides):
        seen.append(overrides)
        return result({"test": {"test/r2": 0.5}}, tmp_path)

    args = argparse.Namespace(quick=False, accelerator="cpu", seeds="0-1", data_dir=None, vary_split=True, jobs=1)
    fake_reproduce([next(e for e in EXPERIMENTS if e.name == "iris_linear_regression")], args, fake, tmp_path / "runs")
    assert [[o for o in overrides if "seed" in o] for overrides in seen] == [
        ["--seed_everything=0", "--data.init_args.seed=0"], ["--seed_everything=1", "--data.init_args.seed=1"]] * 2


def test_a_row_of_two_cpu_kinds_and_quick_runs_into_the_reports_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """A row whose kept records come from another CPU kind is not topped up here without --mix-cpu-kinds; quick runs
    never land in the project's reports/. One line each, nothing run or written."""
    e = next(e for e in EXPERIMENTS if e.name == "xor_mlp")
    options = ledger.run_options(e, "default", 0)
    record = {"experiment": e.name, "kind": "default", "seed": 0, "cpu_kind": "cpu AVX512", "wall_time_s": 1.0,
              "fingerprint": ledger.fingerprint(e, "default", options)}
    ledger.write(tmp_path / "runs", record)
    monkeypatch.chdir(tmp_path)
    for argv, named in ((["--only", "xor_mlp", "--seeds", "0-1", "--out", str(tmp_path)], "--mix-cpu-kinds"),
                        (["--quick", "--only", "xor_mlp", "--out", str(ROOT / "reports")], "never go into the project's reports/")):
        with pytest.raises(SystemExit) as exited:
            reproduce.main([*argv, "--accelerator", "cpu"])
        error = capsys.readouterr().err.strip().splitlines()
        assert exited.value.code == 2 and named in error[-1] and len([line for line in error if "error" in line]) == 1, error
        assert "--quick" in argv or "row xor_mlp (default) holds records of cpu AVX512" in error[-1], error
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["xor_mlp.default.seed0.json"]
    assert not (tmp_path / "lightning_logs").exists()


def test_the_project_registry_writes_into_reports_the_rest_elsewhere():
    def folder(registry: str = str(ledger.ROOT / "configs" / "experiments.yaml"), out: str | None = None, quick: bool = False) -> Path:
        return reproduce.output_folder(argparse.Namespace(registry=registry, out=out, quick=quick, vary_split=False))

    assert folder() == ROOT / "reports"
    assert folder("my/experiments.yaml") == folder(quick=True) == Path("lightning_logs/reproduce")
    assert folder(out="elsewhere") == Path("elsewhere")
