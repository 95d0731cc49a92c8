"""lab/reproduce.py in quick mode on the iris and synthetic experiments, and the generated-table check."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lab.tables import check_tables
from lightning_models.training.experiments import EXPERIMENTS, parse_seeds
from lightning_models.training.run import RunResult
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
    assert [row["name"] for row in report["experiments"]] == wanted
    assert report["meta"]["quick"] is True and report["meta"]["machine"]["torch"]
    for row in report["experiments"]:
        recipes = ["default"] + (["source"] if row["source_keys"] else [])
        for recipe in recipes:
            result = row[recipe]
            assert all(isinstance(v, float) for v in result["values"].values()), (row["name"], recipe, result)
            run_dir = Path(result["run_dir"])
            assert (tmp_path / "lightning_logs").resolve() in run_dir.parents
            assert (run_dir / "metrics.json").is_file()
        if row["sklearn_key"]:
            assert isinstance(row["default"]["sklearn"], float)
    table = (tmp_path / "reports" / "RESULTS.md").read_text()
    for name in wanted:  # one table row each, with numbers in its result cells and a run link
        line = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert re.fullmatch(r"-?\d+\.\d+( / -?\d+\.\d+)?", cells[6]), line
        assert "](../lightning_logs/" in cells[8]


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
def test_only_replaces_its_rows_and_keeps_the_others(tmp_path):
    def reproduce(*options: str) -> dict:
        done = subprocess.run([sys.executable, str(REPRODUCE), "--quick", "--accelerator", "cpu",
                               "--out", "reports", *options], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((tmp_path / "reports" / "RESULTS.json").read_text())

    first = reproduce("--only", "xor_mlp,exp_linear_sgd")
    second = reproduce("--only", "exp_linear_sgd")
    rows = {row["name"]: row for row in second["experiments"]}
    assert list(rows) == ["exp_linear_sgd", "xor_mlp"]  # registry order
    kept = next(row for row in first["experiments"] if row["name"] == "xor_mlp")
    assert rows["xor_mlp"]["default"]["run_dir"] == kept["default"]["run_dir"]  # not re-run
    assert rows["exp_linear_sgd"]["default"]["run_dir"].endswith("version_1")  # re-run: a new version
    runs = [row["default"] for row in rows.values()]
    assert second["meta"]["total_wall_time_s"] == round(sum(run["wall_time_s"] for run in runs), 1)
    assert "`exp_linear_sgd`" in (tmp_path / "reports" / "RESULTS.md").read_text()


def test_seeds_give_mean_std_min_max_and_a_verdict_from_a_fake_runner(tmp_path):
    """Statistics and verdicts on known values: a fake runner returns seed-dependent metrics."""
    import argparse
    import statistics

    from lab.reproduce import run_all
    from lab.tables import table

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
        return RunResult(metrics, tmp_path / f"{name}_{recipe}_{seed}", {"best": None, "last": None}, {},
                         {"epochs": 3, "global_step": 3, **metrics})

    args = argparse.Namespace(quick=False, accelerator="cpu", seeds="0-2", data_dir=None, vary_split=False)
    rows = {row["name"]: row for row in run_all([by_name["iris_autoencoder"], by_name["iris_mlp_regressor"]], args, fake)}
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
    runs = {row["name"]: Path(row["default"]["run_dirs"][0]) for row in report["experiments"] if row["default"]}
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
    rows = json.loads((tmp_path / "reports" / "RESULTS.json").read_text())["experiments"]
    assert [row["name"] for row in rows] == [e.name for e in EXPERIMENTS if e.group == "fashion"]
    for row in rows:
        for recipe in ("default", "source"):
            result = row[recipe]
            metrics = json.loads((Path(result["run_dir"]) / "metrics.json").read_text())
            for key, mean in result["values"].items():  # the row's numbers are its run's (one seed in quick mode)
                assert mean == pytest.approx(metrics[key.split("/")[0]][key]), (row["name"], recipe, key)
            batch = yaml.safe_load((Path(result["run_dir"]) / "config.yaml").read_text())["data"]["init_args"]["batch_size"]
            assert metrics["global_step"] == 2 * min(5, math.ceil((300 - 64) / batch))  # quick: 2 epochs, <= 5 batches


def test_vary_split_moves_the_datamodule_seed_with_the_run_seed(tmp_path):
    import argparse

    from lab.reproduce import run_all

    seen: list[list[str]] = []

    def fake(config, overrides):
        seen.append(overrides)
        return RunResult({"test": {"test/r2": 0.5}}, tmp_path, {"best": None, "last": None}, {}, {"epochs": 1, "global_step": 1})

    args = argparse.Namespace(quick=False, accelerator="cpu", seeds="0-1", data_dir=None, vary_split=True)
    run_all([next(e for e in EXPERIMENTS if e.name == "iris_linear_regression")], args, fake)
    assert [[o for o in overrides if "seed" in o] for overrides in seen] == [
        ["--seed_everything=0", "--data.init_args.seed=0"], ["--seed_everything=1", "--data.init_args.seed=1"]] * 2


@pytest.mark.parametrize("options, differs", [
    (["--quick"], "quick False there, True now"),  # a full --quick run would land in the project's reports/
    (["--only", "xor_mlp", "--out", "reports", "--seeds", "0-1"], "seeds None there, '0-1' now"),
    (["--registry", "my.yaml", "--only", "wine", "--out", "reports"], "registry 'configs/experiments.yaml' there"),
])
def test_a_report_of_another_kind_is_never_replaced_without_force(tmp_path, monkeypatch, capsys, options, differs):
    """A full report stays when a run of another kind (quick, other seeds, another registry) would replace it:
    one line naming --force, nothing run or written."""
    from lab.reproduce import machine, main

    committed = json.loads((ROOT / "reports" / "RESULTS.json").read_text())
    committed["meta"].update(quick=False, accelerator="cpu", split="fixed", seeds=None)
    committed["meta"]["machine"]["device"] = machine()["device"]  # the same kind in all but the option under test
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "RESULTS.json").write_text(json.dumps(committed))
    wine = {"wine": {"what": "w", "group": "wine", "default_keys": ["test/acc"], "config": str(ROOT / "configs" / "xor_mlp.yaml")}}
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(wine))
    before = (tmp_path / "reports" / "RESULTS.json").read_text()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([*options, "--accelerator", "cpu"])
    error = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(error) == 1 and "--force" in error[0] and differs in error[0], error
    assert (tmp_path / "reports" / "RESULTS.json").read_text() == before
    assert not (tmp_path / "lightning_logs").exists()


def test_only_writes_elsewhere_by_default():
    import argparse

    from lab.reproduce import output_folder
    from lightning_models.training.experiments import REGISTRY

    def folder(only: str | None, registry: str = str(REGISTRY), out: str | None = None) -> Path:
        return output_folder(argparse.Namespace(only=only, registry=registry, out=out))

    assert folder(None) == Path("reports")
    assert folder("iris") == folder(None, "my/experiments.yaml") == Path("lightning_logs/reproduce")
    assert folder("iris", out="reports") == Path("reports")
