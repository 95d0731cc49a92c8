"""scripts/train.py end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_models import ClassificationModule
from tests.conftest import CONFIGS, run_train

QUICK = ["--trainer.max_epochs=4", "--trainer.check_val_every_n_epoch=2", "--trainer.enable_progress_bar=false"]


def event_tags(run_dir: Path) -> dict[str, set[str]]:
    tags: dict[str, set[str]] = {"scalars": set(), "images": set()}
    for path in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0})
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    return tags


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    cwd = tmp_path_factory.mktemp("cli")
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), *QUICK], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = cwd / "lightning_logs" / "iris_mlp_classifier" / "version_0"
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), done.stdout


def test_fit_tests_best_checkpoint_and_writes_metrics(classifier_run):
    run_dir, metrics, stdout = classifier_run
    assert f"run directory: {Path('lightning_logs/iris_mlp_classifier/version_0')}" in stdout
    assert metrics["experiment"] == "iris_mlp_classifier" and metrics["seed"] == 0
    assert metrics["global_step"] == 4 * 50
    assert Path(metrics["checkpoints"]["best"]).name.startswith("best-epoch")
    assert Path(metrics["checkpoints"]["last"]).name == "last.ckpt"
    assert 0.8 <= metrics["test"]["test/acc"] <= 1.0 and "val/acc" in metrics["val"]
    assert metrics["versions"]["torch"] == torch.__version__ and metrics["wall_time_s"] > 0
    assert (run_dir / "config.yaml").exists() and (run_dir / "hparams.yaml").exists()


def test_event_files_hold_scalars_and_panels(classifier_run):
    tags = event_tags(classifier_run[0])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "test/acc"} <= tags["scalars"]
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= tags["images"]


def test_checkpoint_reload_reproduces_predictions_exactly(classifier_run):
    _, metrics, _ = classifier_run
    checkpoint = metrics["checkpoints"]["last"]
    first = ClassificationModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()
    second = ClassificationModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(first.state_dict()[key], value) for key, value in state.items())
    x = torch.randn(32, 4)
    with torch.no_grad():
        assert torch.equal(first(x), second(x))
    assert first.hparams.hidden_sizes == [16] and first.hparams.num_outputs == 3


def test_test_subcommand_on_a_checkpoint(classifier_run, tmp_path):
    _, metrics, _ = classifier_run
    done = run_train(["test", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"),
                      "--ckpt_path", metrics["checkpoints"]["best"], "--trainer.enable_progress_bar=false"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = float(re.search(r"test/loss\s*│\s*([0-9.e-]+)", done.stdout).group(1))
    assert printed == pytest.approx(metrics["test"]["test/loss"], rel=1e-6)  # same checkpoint, same result


@pytest.mark.parametrize("name", ["iris_mlp_regressor", "iris_autoencoder"])
def test_regression_and_autoencoder_panels(tmp_path, name):
    done = run_train(["fit", "--config", str(CONFIGS / f"{name}.yaml"), *QUICK], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    tags = event_tags(tmp_path / "lightning_logs" / name / "version_0")
    assert "test/observed_vs_predicted" in tags["images"]
    if name == "iris_autoencoder":
        assert {"val/latent_code", "test/latent_code", "test/recon_mse"} <= tags["images"] | tags["scalars"]
    else:
        assert {"test/r2", "test/rmse", "val/mse"} <= tags["scalars"]


USER_MODULE = '''
import torch
from torch import nn
from torch.nn import functional as F
import pytorch_lightning as pl


class TinyClassifier(pl.LightningModule):
    """A user's own module, in a file outside the project."""

    def __init__(self, num_features: int, num_outputs: int, width: int = 8, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(num_features, width), nn.Tanh(), nn.Linear(width, num_outputs))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self.net(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
'''


def test_user_module_by_class_path(tmp_path):
    package = tmp_path / "my_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(USER_MODULE))
    done = run_train([
        "fit", "--model", "my_pkg.TinyClassifier", "--model.width", "12",
        "--data", "datamodules.IrisDataModule", "--trainer.max_epochs", "150",
        "--trainer.enable_progress_bar=false", "--experiment_name", "mine",
    ], tmp_path, extra_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "lightning_logs" / "mine" / "version_0" / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] >= 0.8
    hparams = (tmp_path / "lightning_logs" / "mine" / "version_0" / "hparams.yaml").read_text()
    assert "width: 12" in hparams and "num_features: 4" in hparams


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--model", "lightning_models.NoSuchModule"], "NoSuchModule"),
        (["--data.init_args.target", "colour"], "colour"),
        (["--data.init_args.split", "random"], "random"),
        (["--model.init_args.lr", "-0.1"], "lr=-0.1"),
        (["--model.init_args.hidden_sizes", "[4, 0]"], "hidden_sizes=0"),
        (["--model.init_args.optimizer", "lbfgs"], "lbfgs"),
        (["--data.init_args.batch_size", "0"], "batch_size=0"),
        (["--model.init_args.label_smoothing", "1.5"], "label_smoothing=1.5"),
        (["--trainer.no_such_key", "1"], "no_such_key"),
    ],
)
def test_bad_input_is_rejected_before_training(tmp_path, override, expected):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), *override], tmp_path)
    assert done.returncode != 0
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "lightning_logs").exists()  # nothing that looks like a run
