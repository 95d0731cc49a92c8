"""A LightningModule and LightningDataModule that know nothing of the template run under ``scripts/train.py fit``
and ``run()`` as under a bare ``LightningCLI()``: no sizes are linked into a model that does not take them, and the
run still ends in ``metrics.json``."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import CONFIGS, run_train

BORING = ["--model", "pytorch_lightning.demos.boring_classes.BoringModel",
          "--data", "pytorch_lightning.demos.boring_classes.BoringDataModule"]
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]

# A new user's pair, written as they would: the module builds its own net, the datamodule serves random tensors.
USER_PACKAGE = '''
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class LineData(pl.LightningDataModule):
    def __init__(self, rows: int = 96) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(rows, 3, generator=generator)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(rows, 1, generator=generator)
        self.splits = {"train": (x[:32], y[:32]), "val": (x[32:64], y[32:64]), "test": (x[64:], y[64:])}

    def loader(self, split: str) -> DataLoader:
        return DataLoader(TensorDataset(*self.splits[split]), batch_size=16 if split == "train" else 32)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")


class LineModel(pl.LightningModule):
    def __init__(self, lr: float = 0.3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(3, 1)

    def mse(self, batch) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.mse(batch)
        self.log("train_mse", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val_mse", self.mse(batch))

    def test_step(self, batch, batch_idx: int) -> None:
        self.log("test_mse", self.mse(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
'''


def metrics_json(folder: Path) -> dict:
    (path,) = folder.glob("lightning_logs/*/version_*/metrics.json")
    return json.loads(path.read_text())


def test_lightning_demo_pair_trains_through_train_py_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_models import run

    script = tmp_path / "script"
    script.mkdir()
    with pytest.warns(UserWarning, match="BoringModel logs no 'val/loss', the default monitor"):
        done = run_train(["fit", *BORING, *TINY], cwd=script)
    assert done.returncode == 0, done.stderr[-3000:]
    record = metrics_json(script)
    assert (record["global_step"], record["epochs"]) == (2, 1)  # 1 epoch of limit_train_batches=2
    assert record["val"] == {} and record["test"] == {}  # validated and tested; BoringModel logs nothing
    assert Path(record["checkpoints"]["best"]).is_file()  # the newest weights: the module logs no val/loss

    monkeypatch.chdir(tmp_path)
    result = run(*BORING, *TINY, "--trainer.max_epochs", "2")
    assert (result.record["global_step"], result.record["epochs"]) == (4, 2)
    assert json.loads((result.folder / "metrics.json").read_text())["global_step"] == 4
    assert result.config["model"]["class_path"].endswith("BoringModel") and "init_args" not in result.config["model"]
    best = torch.load(result.checkpoints["best"], weights_only=True)
    assert best["global_step"] == 4  # the newest weights, not the first validation's


def test_a_new_users_own_pair_trains_through_run_to_metrics_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_models import run

    (tmp_path / "plain_user_pair.py").write_text(textwrap.dedent(USER_PACKAGE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = run("--model", "plain_user_pair.LineModel", "--data", "plain_user_pair.LineData", "--trainer.max_epochs", "3",
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")
    record = json.loads((result.folder / "metrics.json").read_text())
    assert record["global_step"] == 3 * 2  # 32 training rows in batches of 16
    assert math.isfinite(record["train"]["train_mse"])

    from plain_user_pair import LineData  # the same rows, and the tested checkpoint's weights, recomputed here

    x, y = LineData().splits["test"]
    weights = torch.load(record["checkpoints"]["best"], weights_only=True)["state_dict"]
    expected = torch.mean((x @ weights["layer.weight"].T + weights["layer.bias"] - y) ** 2).item()
    assert record["test"]["test_mse"] == pytest.approx(expected, rel=1e-5)
    assert record["val"]["val_mse"] > 0 and record["test"]["test_mse"] < 0.5 * float(torch.mean(y**2))  # it learned


def test_template_module_with_a_datamodule_lacking_sizes_says_so_in_one_line(tmp_path: Path) -> None:
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"),
                      "--data", "pytorch_lightning.demos.boring_classes.BoringDataModule"], cwd=tmp_path)
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        "error: BoringDataModule.num_features is None after its __init__; the model is built from it before setup(), "
        "so the datamodule must know num_features once constructed."]
    assert "Traceback" not in done.stderr


def test_a_monitor_the_config_chose_stays_an_error_when_the_module_does_not_log_it(tmp_path: Path) -> None:
    done = run_train(["fit", *BORING, *TINY, "--checkpoint.monitor", "val/acc"], cwd=tmp_path)
    assert done.returncode == 2
    assert "val/acc" in done.stderr and "Traceback" not in done.stderr
