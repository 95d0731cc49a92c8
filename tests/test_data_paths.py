"""One rule for relative data paths (lightning_models.training.data_paths): relative to the config file that names
them, on the command line to the working folder; the registry's data_files follow the same rule (tests/test_registry.py);
a path that is not there is named absolute, with the rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lightning_models import build
from lightning_models.checks import ConfigError
from tests.conftest import CONFIGS
from tests.helpers import wine_csv

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
    datamodule = build(str(config), "--data.init_args.path=here.csv", *QUIET).datamodule
    assert Path(datamodule.path).resolve() == tmp_path / "elsewhere" / "here.csv"


def test_a_missing_path_is_named_absolute_with_the_rule(project):
    config = project / "configs" / "examples" / "csv_classification.yaml"
    (project / "data" / "wine.csv").unlink()
    with pytest.raises(ConfigError) as raised:
        build(str(config), *QUIET)
    message = str(raised.value)
    assert message.startswith(f"{project / 'data' / 'wine.csv'}: no such file")
    assert "relative to that file's folder, on the command line to the working folder" in message
