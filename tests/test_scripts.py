"""The scripts' other entry points: bad input is one short error with its exit code, and the CLI's switches."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONFIGS, ROOT, run_train
from tests.helpers import run_script


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    folder = "lab" if name in ("reproduce.py", "benchmark.py", "pictures.py") else "scripts"
    return run_script(ROOT / folder / name, *args, cwd=cwd)


@pytest.mark.parametrize(("name", "args", "code", "named"), [
    ("reproduce.py", ["--only", "iris,nosuch"], 1, "nosuch"),
    ("reproduce.py", ["--seeds", "3-1"], 2, "3-1"),
    ("benchmark.py", ["--cases", "nosuch"], 2, "nosuch"),
    ("evaluate.py", ["missing.ckpt"], 2, "missing.ckpt"),
    ("evaluate.py", ["foreign.ckpt"], 2, "foreign.ckpt"),
    ("pictures.py", ["--report", "nothing.json"], 2, "nothing.json"),
])
def test_bad_input_is_one_short_error(tmp_path, name, args, code, named):
    (tmp_path / "foreign.ckpt").write_text("not a checkpoint\n")
    done = script(name, *args, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr[-2000:]
    assert named in done.stderr and "Traceback" not in done.stderr
    assert len([line for line in lines if not line.startswith("usage:") and not line.startswith("  ")]) <= 2, lines
    assert not (tmp_path / "lightning_logs").exists() and not (tmp_path / "reports").exists()


def test_test_after_fit_false_writes_train_metrics_only(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_linear_regression.yaml"), "--trainer.max_epochs=2",
                      "--trainer.enable_progress_bar=false", "--test_after_fit=false"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "lightning_logs" / "iris_linear_regression" / "version_0" / "metrics.json").read_text())
    assert "val" not in metrics and "test" not in metrics and metrics["train"]["train/loss"] > 0
    assert "Testing" not in done.stdout and "test/" not in done.stdout


def test_print_config_prints_the_merged_config_and_runs_nothing(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "fashion_cnn.yaml"), "--model.init_args.optimizer.init_args.lr=0.01",
                      "--print_config"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    config = yaml.safe_load(done.stdout)
    assert config["model"]["init_args"]["net"]["class_path"] == "lightning_models.nets.FashionCNN"
    assert config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.01  # the override, merged
    assert config["trainer"]["max_epochs"] == yaml.safe_load((CONFIGS / "fashion_cnn.yaml").read_text())["trainer"]["max_epochs"]
    assert not (tmp_path / "lightning_logs").exists()
