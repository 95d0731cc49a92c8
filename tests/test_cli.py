"""scripts/train.py end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from sklearn.metrics import f1_score

from datamodules import IrisDataModule
from lightning_models import ClassificationModule
from lightning_models.training.checkpoints import load_module
from tests.conftest import CONFIGS, ROOT, run_train
from tests.helpers import event_tags, run_script

QUICK = ["--trainer.max_epochs=4", "--trainer.check_val_every_n_epoch=2", "--trainer.enable_progress_bar=false"]


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
    assert metrics["global_step"] == 4 and metrics["train"]["train/updates"] == 4 * 50  # Lightning steps, updates
    assert Path(metrics["checkpoints"]["best"]).name.startswith("best-epoch")
    assert Path(metrics["checkpoints"]["last"]).name == "last.ckpt"
    assert 0.8 <= metrics["test"]["test/acc"] <= 1.0 and "val/acc" in metrics["val"]
    assert metrics["versions"]["torch"] == torch.__version__ and metrics["wall_time_s"] > 0
    assert (run_dir / "config.yaml").exists() and (run_dir / "hparams.yaml").exists()


def test_event_files_hold_scalars_and_panels(classifier_run):
    tags = event_tags(classifier_run[0])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "test/acc"} <= tags["scalars"]
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= tags["images"]


def test_reloaded_best_checkpoint_recomputes_the_reported_test_metrics(classifier_run):
    _, metrics, _ = classifier_run
    model = load_module(metrics["checkpoints"]["best"])
    assert isinstance(model, ClassificationModule) and model.net[0].out_features == 16  # the configured MLP
    datamodule = IrisDataModule(target="species", val_fraction=0.2)
    datamodule.setup()
    inputs, targets = datamodule.splits["test"]
    with torch.no_grad():
        logits = model(inputs)
    predicted = logits.argmax(1).numpy()
    assert metrics["test"]["test/acc"] == pytest.approx(float((predicted == targets.numpy()).mean()), abs=1e-6)
    assert metrics["test"]["test/f1"] == pytest.approx(f1_score(targets.numpy(), predicted, average="macro"), abs=1e-6)
    loss = torch.nn.functional.cross_entropy(logits, targets).item()
    assert metrics["test"]["test/loss"] == pytest.approx(loss, rel=1e-5)


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


def test_csv_logger_gets_the_final_metrics_instead_of_crashing(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_linear_regression.yaml"), "--trainer.max_epochs=4",
                      "--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir", "csv_logs",
                      "--trainer.enable_progress_bar=false"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(next(tmp_path.glob("csv_logs/*/version_0/metrics.json")).read_text())
    rows = list(csv.DictReader(next(tmp_path.glob("csv_logs/*/version_0/metrics.csv")).open()))
    final = [float(row["final_test/r2"]) for row in rows if row.get("final_test/r2")]
    assert final == [pytest.approx(metrics["test"]["test/r2"])]
    assert "TensorBoard:" not in done.stdout  # no TensorBoard logger, no TensorBoard command


USER_NET = """
import torch
from torch import nn


class ResidualNet(nn.Module):
    \"\"\"A user's own architecture: (num_features, num_outputs, its own arguments).\"\"\"

    def __init__(self, num_features: int, num_outputs: int, width: int = 8):
        super().__init__()
        self.inner = nn.Linear(num_features, width)
        self.skip = nn.Linear(num_features, num_outputs)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x):
        return self.skip(x) + self.head(torch.tanh(self.inner(x)))
"""


def test_user_net_injected_from_the_command_line_trains_and_reloads(tmp_path):
    package = tmp_path / "my_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(USER_NET)
    net = json.dumps({"class_path": "my_pkg.ResidualNet", "init_args": {"width": 6}})
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--model.init_args.net", net,
                      "--trainer.enable_progress_bar=false", "--experiment_name", "mine"], tmp_path, extra_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "lightning_logs" / "mine" / "version_0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] >= 0.9
    state = torch.load(metrics["checkpoints"]["best"], weights_only=True)["state_dict"]
    assert state["net.inner.weight"].shape == (6, 4) and state["net.skip.weight"].shape == (3, 4)
    evaluated = run_script(ROOT / "scripts" / "evaluate.py", metrics["checkpoints"]["best"], "--out",
                           str(tmp_path / "predictions.csv"), cwd=tmp_path, extra_path=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    reloaded = json.loads(evaluated.stdout[: evaluated.stdout.rindex("}") + 1])
    assert reloaded["test/acc"] == pytest.approx(metrics["test"]["test/acc"], abs=1e-6)
    assert reloaded["test/loss"] == pytest.approx(metrics["test"]["test/loss"], rel=1e-6)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--model", "lightning_models.NoSuchModule"], "NoSuchModule"),
        (["--data.init_args.target", "colour"], "colour"),
        (["--data.init_args.partition", "random"], "random"),
        (["--model.init_args.optimizer.init_args.lr", "-0.1"], "Invalid learning rate: -0.1"),
        (["--model.init_args.net.init_args.hidden_sizes", "[4, 0]"], "hidden_sizes=0"),
        (["--model.init_args.net", '{"class_path": "torch.nn.Conv2d"}'], "the following arguments are required: kernel_size"),
        (["--model.init_args.net", '{"class_path": "my.Net"}'], "no module named 'my'; is its folder on PYTHONPATH?"),
        (["--model.init_args.net", "torch.nn.Identity"], "net torch.nn.modules.linear.Identity has no parameters to train"),
        (["--model.init_args.label_smothing", "0.1"], "Option 'label_smothing' is not accepted"),
        (["--model.init_args.optimizer", "lbfgs"], "lbfgs"),
        (["--data.init_args.batch_size", "0"], "batch_size=0"),
        (["--model.init_args.label_smoothing", "1.5"], "label_smoothing=1.5"),
        (["--trainer.no_such_key", "1"], "no_such_key"),
        (["--data.init_args.batch_size", "abc"], "Expected a <class 'int'>. Got value: abc"),
        (["--model.init_args.net.init_args.hidden_sizes", "abc"], "Got value: abc"),
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--trainer.max_epochs", "-5"], "trainer: `max_epochs` must be a non-negative integer or -1. You passed in -5."),
    ],
)
def test_bad_input_is_rejected_before_training(tmp_path, monkeypatch, capsys, override, expected):
    """In this process (``scripts/train.py`` is ``train_cli.main``); the YAML test below checks a real process's stderr."""
    from lightning_models.training.train_cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), *override])
    stderr = capsys.readouterr().err
    assert exited.value.code == 2
    assert expected in stderr
    assert "Traceback" not in stderr and "usage:" not in stderr
    errors = [line for line in stderr.splitlines() if line.strip() and "Seed set" not in line]
    assert len(errors) <= 2, stderr  # the error and where --help is; the full usage stays on --help
    assert not (tmp_path / "lightning_logs").exists()  # nothing that looks like a run


def test_a_bad_key_inside_a_config_is_named(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  init_args:\n    net:\n      init_args: {hidden_sizes: [8], widthh: 16}\n"
                      "data:\n  init_args: {batch_size: 4}\n")
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--config", str(config)], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: Option 'widthh' is not accepted" in done.stderr
    assert not (tmp_path / "lightning_logs").exists()


def test_yaml_syntax_error_names_the_file_and_the_place(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("trainer:\n  max_epochs: [1\n")
    done = run_train(["fit", "--config", str(config)], tmp_path, fresh_process=True)  # a real process's stderr
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{config}: not valid YAML (while parsing a flow sequence, line 2 column 15)" in done.stderr
