"""Each iris config, shortened to a few hundred updates, must beat a stated floor on its test split."""

import pytest
import torch

from tests.conftest import CONFIGS, build_from_config

# (config, epochs of 50 updates, test metric, floor, higher is better)
CASES = [
    ("iris_linear_regression", 8, "test/r2", 0.85, True),
    ("iris_logistic_regression", 6, "test/acc", 0.9, True),
    ("iris_mlp_classifier", 6, "test/acc", 0.9, True),
    ("iris_mlp_regressor", 8, "test/r2", 0.85, True),
    ("iris_autoencoder", 10, "test/recon_mse", 0.08, False),
]


@pytest.mark.parametrize(("name", "epochs", "metric", "floor", "higher"), CASES, ids=[c[0] for c in CASES])
def test_iris_experiment_beats_floor(in_tmp, name, epochs, metric, floor, higher):
    model, datamodule, trainer = build_from_config(
        CONFIGS / f"{name}.yaml", f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
    )
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == epochs * model.hparams.updates_per_step  # global_step counts updates
    result = trainer.test(model, datamodule=datamodule, verbose=False)[0][metric]
    assert (result >= floor) if higher else (result <= floor), f"{name}: {metric}={result:.4f}, floor {floor}"


def test_seed_recipe_matches_plain_pytorch_loop(in_tmp):
    """The seed config does exactly the seed's updates: same init, same loss, same SGD steps."""
    model, datamodule, trainer = build_from_config(
        CONFIGS / "seed" / "iris_mlp_classifier.yaml", "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false",
    )
    plain = type(model.net)(4, 3, [6], "sigmoid")
    plain.load_state_dict(model.net.state_dict())
    trainer.fit(model, datamodule=datamodule)
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
