"""The experiment registry's contract (lightning_models/training/experiments.py): what an entry needs, what it may
leave out, where its paths point, and the one-line errors for entries that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_models.checks import ConfigError
from lightning_models.training.experiments import EXPERIMENTS, load_registry, parse_seeds
from tests.conftest import CONFIGS


def registry(folder: Path, entries: dict) -> Path:
    path = folder / "experiments.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


def test_an_entry_needs_only_what_group_and_keys(tmp_path):
    (tmp_path / "mine.yaml").write_text("model: {}\n")
    (tmp_path / "other.yaml").write_text("model: {}\n")
    entries = {"mine": {"what": "a table of mine", "group": "tabular", "default_keys": ["test/acc"],
                        "data_files": {"path": "data/table.csv"}},
               "other": {"what": "another", "group": "anything", "default_keys": ["test/mse"], "seeds": 3}}
    mine, other = load_registry(registry(tmp_path, entries))
    assert (mine.name, mine.group, mine.default_keys) == ("mine", "tabular", ("test/acc",))
    assert mine.default_config == tmp_path / "mine.yaml" and mine.source_config is None  # beside the registry
    assert mine.texts is None and mine.reported is None and mine.check is None and mine.seeds == "0-4"
    assert mine.data_overrides() == [f"--data.init_args.path={tmp_path / 'data' / 'table.csv'}"]
    assert mine.data_overrides("/data") == mine.data_overrides()  # only needs_data_dir entries take --data-dir
    assert other.seeds == "3"
    with pytest.raises(ConfigError, match="no source recipe"):
        mine.config("source")


def test_the_projects_registry_knows_its_configs_seeds_and_data():
    by_name = {e.name: e for e in EXPERIMENTS}
    assert by_name["iris_mlp_classifier"].config("source") == CONFIGS / "source" / "iris_mlp_classifier.yaml"
    assert by_name["exp_linear_sgd"].source_config is None
    fashion = by_name["fashion_cnn"]
    assert parse_seeds(fashion.seeds) == [0, 1, 2] and fashion.data_overrides("/data") == ["--data.init_args.data_dir=/data"]
    assert all(parse_seeds(e.seeds) for e in EXPERIMENTS)


@pytest.mark.parametrize(("entry", "named"), [
    ({"group": "g", "default_keys": ["test/acc"]}, "missing what"),
    ({"what": "w", "group": "g", "default_keys": ["test/acc"], "text": "000"}, "unknown field 'text'"),
    ({"what": "w", "group": "g", "default_keys": ["test/acc"], "config": "nowhere.yaml"}, "nowhere.yaml"),
    ({"what": "w", "group": "g", "default_keys": ["test/acc"], "source_keys": ["val/acc"]}, "source/mine.yaml"),
    ({"what": "w", "group": "g", "default_keys": ["test/acc"], "seeds": "4-1"}, "'4-1'"),
    ({"what": "w", "group": "g", "default_keys": ["test/acc"], "check": {"metric": "test/acc"}}, "floor, ceiling, near"),
    ("just text", "expected a mapping"),
])
def test_a_bad_entry_is_one_line_naming_the_entry_and_the_value(tmp_path, entry, named):
    (tmp_path / "mine.yaml").write_text("model: {}\n")
    with pytest.raises(ConfigError, match="experiment 'mine'") as raised:
        load_registry(registry(tmp_path, {"mine": entry}))
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_registry_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nothing.yaml"):
        load_registry(tmp_path / "nothing.yaml")
