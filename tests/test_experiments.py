"""Every experiment of configs/experiments.yaml: its configs exist and name their parts, and its default
config, shortened as its `check` says, passes that check. A new registry entry is tested here by itself."""

from __future__ import annotations

import pytest
import torch
import yaml

from scripts.reproduce import EXPERIMENTS
from tests.conftest import CONFIGS, build_from_config

CHECKED = [e for e in EXPERIMENTS if e.check]


def test_every_config_belongs_to_one_experiment_and_names_its_net():
    registered = {e.config("default") for e in EXPERIMENTS} | {e.config("source") for e in EXPERIMENTS if e.source_keys}
    on_disk = {path for path in CONFIGS.glob("*.yaml") if path.name != "experiments.yaml"} | set(CONFIGS.glob("source/*.yaml"))
    assert on_disk == registered
    for path in sorted(on_disk):
        model = yaml.safe_load(path.read_text())["model"]
        assert model["init_args"]["net"]["class_path"].startswith("lightning_models.nets."), path
        assert "optimizer" in model["init_args"], path


@pytest.mark.parametrize("experiment", CHECKED, ids=[e.name for e in CHECKED])
def test_default_config_passes_its_check(in_tmp, experiment):
    check = experiment.check
    model, datamodule, trainer = build_from_config(
        experiment.config("default"), *check["overrides"], "--trainer.enable_progress_bar=false",
    )
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


def test_source_recipe_matches_plain_pytorch_loop(in_tmp):
    """The source config does exactly text 000's updates: same init, same loss, same SGD steps."""
    model, datamodule, trainer = build_from_config(
        CONFIGS / "source" / "iris_mlp_classifier.yaml", "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false",
    )
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
