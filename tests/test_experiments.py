"""Every experiment of configs/experiments.yaml: its configs exist and name their parts, and its default
config, shortened as its `check` says, passes that check. A new registry entry is tested here by itself.
The same checks, and a full ``lab/reproduce.py --only``, on an experiment from outside the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_models import build
from lightning_models.training.experiments import EXPERIMENTS, Experiment, load_registry
from lightning_models.util import import_class
from tests.conftest import CONFIGS, ROOT

CHECKED = [e for e in EXPERIMENTS if e.check]


def configs_of(experiment: Experiment) -> list[Path]:
    return [path for path in (experiment.default_config, experiment.source_config) if path is not None]


def assert_names_its_parts(experiment: Experiment) -> None:
    """Each config names a model with an importable net (``net(num_features, num_outputs)``) and an optimizer."""
    for path in configs_of(experiment):
        config = yaml.safe_load(path.read_text())
        model = config["model"]
        for class_path in (model["class_path"], model["init_args"]["net"]["class_path"], config["data"]["class_path"]):
            try:
                import_class(class_path)
            except (ImportError, AttributeError):
                pytest.fail(f"{path}: cannot import {class_path}: is its folder on PYTHONPATH?", pytrace=False)
        assert "optimizer" in model["init_args"], path


def assert_passes_its_check(experiment: Experiment) -> None:
    """The default config, shortened by the check's overrides, trains one step per batch and meets the check."""
    check = experiment.check
    parts = build(experiment.config("default"), *experiment.data_overrides(), *check["overrides"],
                  "--trainer.enable_progress_bar=false")
    model, datamodule, trainer = parts.model, parts.datamodule, parts.trainer
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == trainer.current_epoch * trainer.num_training_batches  # one step per batch
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    value = results[check["metric"]]
    if "near" in check:  # e.g. XOR on raw features: as bad as scikit-learn's logistic regression, no better, no worse
        assert abs(value - results[check["near"]]) <= check["within"], (
            f"{experiment.name}: {check['metric']}={value:.4f}, {check['near']}={results[check['near']]:.4f}")
    elif "floor" in check:
        assert value >= check["floor"], f"{experiment.name}: {check['metric']}={value:.4f}, floor {check['floor']}"
    else:
        assert value <= check["ceiling"], f"{experiment.name}: {check['metric']}={value:.4f}, ceiling {check['ceiling']}"


def test_every_config_belongs_to_one_experiment_and_names_its_parts():
    registered = {path for e in EXPERIMENTS for path in configs_of(e)}
    on_disk = ({path for path in CONFIGS.glob("*.yaml") if path.name not in ("experiments.yaml", "defaults.yaml")}
               | set(CONFIGS.glob("source/*.yaml")))
    assert on_disk - registered == set()  # a registered config may also live elsewhere (the entry names it)
    for experiment in EXPERIMENTS:
        assert_names_its_parts(experiment)


@pytest.mark.parametrize("experiment", CHECKED, ids=[e.name for e in CHECKED])
def test_default_config_passes_its_check(in_tmp, experiment):
    assert_passes_its_check(experiment)


OUTSIDE_NET = '''
import torch


class TwoLayerNet(torch.nn.Module):
    """A user's own net: any nn.Module called as net(num_features, num_outputs)."""

    def __init__(self, num_features: int, num_outputs: int, hidden: int = 8) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(num_features, hidden), torch.nn.Tanh(),
                                          torch.nn.Linear(hidden, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
'''

OUTSIDE_CONFIG = {
    "trainer": {"max_epochs": 4, "check_val_every_n_epoch": 1, "log_every_n_steps": 1},
    "model": {"class_path": "lightning_models.ClassificationModule", "init_args": {
        "net": {"class_path": "outside_nets.TwoLayerNet", "init_args": {"hidden": 8}},
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.05}}}},
    "data": {"class_path": "datamodules.CSVDataModule", "init_args": {
        "path": "data/blobs.csv", "target": "kind", "task": "classification", "batch_size": 16,
        "val_fraction": 0.2, "test_fraction": 0.2}},
}


def write_outside_experiment(folder: Path) -> tuple[Path, Path]:
    """A package with a net, and a project folder with a CSV, a config and a registry, as a user would write
    them (nothing inside this repository). Returns (the package's parent folder, the registry file)."""
    packages, project = folder / "packages", folder / "my_project"
    (packages / "outside_nets").mkdir(parents=True)
    (packages / "outside_nets" / "__init__.py").write_text(OUTSIDE_NET)
    (project / "data").mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    centres = {"left": (-2.0, 0.0), "right": (2.0, 0.0), "top": (0.0, 2.5)}
    rows = ["x1,x2,kind"]
    for kind, (a, b) in centres.items():
        for x1, x2 in (torch.randn(30, 2, generator=generator) * 0.5 + torch.tensor([a, b])).tolist():
            rows.append(f"{x1:.4f},{x2:.4f},{kind}")
    (project / "data" / "blobs.csv").write_text("\n".join(rows) + "\n")
    (project / "blobs.yaml").write_text(yaml.safe_dump(OUTSIDE_CONFIG))
    (project / "experiments.yaml").write_text(yaml.safe_dump({"blobs_outside": {
        "what": "three blobs from a CSV, with a net of my own", "group": "tabular", "default_keys": ["test/acc"],
        "config": "blobs.yaml", "data_files": {"path": "data/blobs.csv"},
        "check": {"overrides": [], "metric": "test/acc", "floor": 0.9}}}))
    return packages, project / "experiments.yaml"


def test_an_outside_experiment_whose_package_is_not_on_the_path_is_named_in_one_line(tmp_path):
    _, registry_file = write_outside_experiment(tmp_path)
    [experiment] = load_registry(registry_file)
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_names_its_parts(experiment)
    assert str(failed.value) == f"{experiment.default_config}: cannot import outside_nets.TwoLayerNet: is its folder on PYTHONPATH?"


@pytest.mark.slow
def test_an_experiment_from_outside_the_project_passes_its_check_and_a_full_reproduction(tmp_path, monkeypatch):
    """A registry entry with no source-text fields, an unknown group, a net from its own package and a CSV
    given relative to the registry: the project's own checks pass in another working folder, and
    ``lab/reproduce.py --only`` runs it over the default seeds."""
    packages, registry_file = write_outside_experiment(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the config's relative data path would not resolve here
    monkeypatch.syspath_prepend(str(packages))
    [experiment] = load_registry(registry_file)
    assert experiment.texts is None and experiment.source_config is None
    assert_names_its_parts(experiment)
    assert_passes_its_check(experiment)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(packages), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "lab" / "reproduce.py"), "--registry", str(registry_file),
                           "--only", "tabular", "--accelerator", "cpu", "--out", str(tmp_path / "reports")],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = json.loads((tmp_path / "reports" / "RESULTS.json").read_text())["experiments"]
    result = row["default"]
    assert row["name"] == "blobs_outside" and row["source"] is None and row["verdict"] == "—"
    assert result["seeds"] == [0, 1, 2, 3, 4] and len(set(result["run_dirs"])) == 5
    for seed, run_dir, accuracy in zip(result["seeds"], result["run_dirs"], result["per_seed"]["test/acc"]):
        written = json.loads((Path(run_dir) / "metrics.json").read_text())  # what each seed's run wrote
        assert written["seed"] == seed and written["test"]["test/acc"] == accuracy
    assert result["min"]["test/acc"] >= 0.9
    assert "| `blobs_outside` | test/acc | — |" in (tmp_path / "reports" / "RESULTS.md").read_text()


def test_source_recipe_matches_plain_pytorch_loop(in_tmp):
    """The source config does exactly text 000's updates: same init, same loss, same SGD steps."""
    parts = build(CONFIGS / "source" / "iris_mlp_classifier.yaml", "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false")
    model, datamodule, trainer = parts.model, parts.datamodule, parts.trainer
    plain = type(model.net)(4, 3, [6], "sigmoid")
    plain.load_state_dict(model.net.state_dict())
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 2 and trainer.callback_metrics["train/updates"] == 200
    x, y = datamodule.splits["train"]
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.01)
    target = torch.nn.functional.one_hot(y, 3).float()
    for _ in range(200):
        loss = torch.nn.functional.mse_loss(torch.softmax(plain(x), dim=1), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for ours, theirs in zip(model.net.parameters(), plain.parameters()):
        torch.testing.assert_close(ours, theirs)
