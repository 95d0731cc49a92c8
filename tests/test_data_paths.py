"""One rule for relative data paths (lightning_models.training.cli.resolve_data_paths): relative to the config file that names
them, on the command line to the working folder; the registry's data_files follow the same rule (tests/test_registry.py);
a path that is not there is named absolute, with the rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lightning_models import build
from lightning_models.checks import ConfigError
from tests.conftest import CONFIGS, ROOT, run_train
from tests.helpers import run_script, wine_csv

QUIET = ["--trainer.logger=false", "--progress_bar=null", "--trainer.enable_model_summary=false"]


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """configs/examples/csv_classification.yaml copied into <tmp>/project/configs/examples/, its data in
    <tmp>/project/data/, and the working folder somewhere else (<tmp>/elsewhere)."""
    config = tmp_path / "project" / "configs" / "examples" / "csv_classification.yaml"
    config.parent.mkdir(parents=True)
    shutil.copyfile(CONFIGS / "examples" / "csv_classification.yaml", config)
    (tmp_path / "project" / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    wine_csv(tmp_path / "project" / "data" / "wine.csv")
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "project"


def test_a_path_in_a_config_is_relative_to_the_config_from_any_working_folder(project):
    config = project / "configs" / "examples" / "csv_classification.yaml"
    assert yaml.safe_load(config.read_text())["data"]["init_args"]["path"] == "../../data/wine.csv"
    datamodule = build(str(config), *QUIET).datamodule
    assert Path(datamodule.path) == project / "data" / "wine.csv"
    assert datamodule.num_features == 13


def test_a_later_config_that_sets_the_path_decides_its_folder(project, tmp_path):
    other = tmp_path / "other" / "layer.yaml"
    other.parent.mkdir()
    wine_csv(tmp_path / "other" / "mine.csv")
    other.write_text(yaml.safe_dump({"data": {"init_args": {"path": "mine.csv"}}}))
    config = project / "configs" / "examples" / "csv_classification.yaml"
    datamodule = build(str(config), "--config", str(other), *QUIET).datamodule
    assert Path(datamodule.path) == tmp_path / "other" / "mine.csv"


def test_a_path_on_the_command_line_is_relative_to_the_working_folder(project, tmp_path):
    wine_csv(tmp_path / "elsewhere" / "here.csv")
    config = project / "configs" / "examples" / "csv_classification.yaml"
    for option in (["--data.init_args.path=here.csv"], ["--data.path", "here.csv"]):
        parts = build(str(config), *option, *QUIET)
        assert Path(parts.datamodule.path) == tmp_path / "elsewhere" / "here.csv"
        assert parts.config.data.init_args.path == str(tmp_path / "elsewhere" / "here.csv")  # absolute: config.yaml holds this


def test_a_run_trained_on_a_relative_command_line_path_evaluates_from_another_folder(tmp_path):
    """docs/own-data.md: the run's config.yaml holds the absolute path used, so scripts/evaluate.py RUN works anywhere."""
    (tmp_path / "here" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    wine_csv(tmp_path / "here" / "data" / "wine.csv")
    done = run_train(["fit", "--config", str(CONFIGS / "examples" / "csv_classification.yaml"), "--data.init_args.path",
                      "data/wine.csv", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
                      "--trainer.precision=32-true"], tmp_path / "here")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "here" / "lightning_logs" / "csv_classification" / "version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]["path"] == str(tmp_path / "here" / "data" / "wine.csv")
    evaluated = run_script(ROOT / "scripts" / "evaluate.py", str(run), cwd=tmp_path / "elsewhere")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout[: evaluated.stdout.rindex("}") + 1])
    assert metrics["test/acc"] == pytest.approx(json.loads((run / "metrics.json").read_text())["test"]["test/acc"], abs=1e-6)
    assert (run / "predictions.csv").is_file() and not (tmp_path / "elsewhere" / "lightning_logs").exists()


def test_a_missing_path_is_named_absolute_with_the_rule(project):
    config = project / "configs" / "examples" / "csv_classification.yaml"
    (project / "data" / "wine.csv").unlink()
    with pytest.raises(ConfigError) as raised:
        build(str(config), *QUIET)
    message = str(raised.value)
    assert message.startswith(f"{project / 'data' / 'wine.csv'}: no such file")
    assert "relative to that file's folder, on the command line to the working folder" in message
