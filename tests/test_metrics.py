"""Metrics recomputed independently: regression metrics from the saved predictions (scikit-learn), and
the max-abs-error's reduction over two real processes."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import mean_squared_error, r2_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_models.regression import MaxAbsoluteError
from tests.conftest import CONFIGS, run_train

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_regression_metrics_equal_scikit_learn_on_the_predictions(tmp_path):
    """Iris petal-width regression: the test metrics in metrics.json and in TensorBoard equal MSE, RMSE, R2
    and the largest absolute error recomputed with scikit-learn/numpy from the best checkpoint's predictions."""
    config = str(CONFIGS / "iris_linear_regression.yaml")
    done = run_train(["fit", "--config", config, "--trainer.max_epochs=30", *QUIET], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "iris_linear_regression" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    predicted = run_train(["predict", "--config", config, "--ckpt_path", metrics["checkpoints"]["best"], *QUIET], tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    table = list(csv.DictReader((run / "predictions-test.csv").open()))
    header = list(table[0])
    target = next(name for name in header if name.startswith("target"))  # the prediction's column follows it
    observed = np.array([float(row[target]) for row in table])
    guessed = np.array([float(row[header[header.index(target) + 1]]) for row in table])
    expected = {"test/mse": mean_squared_error(observed, guessed), "test/rmse": mean_squared_error(observed, guessed) ** 0.5,
                "test/r2": r2_score(observed, guessed), "test/max_abs_error": np.abs(observed - guessed).max()}
    assert len(table) == 75 and expected["test/r2"] > 0.8  # a fitted model, not a constant
    scalars = {}
    for path in run.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        accumulator.Reload()
        scalars.update({tag: accumulator.Scalars(tag)[-1].value for tag in accumulator.Tags()["scalars"] if tag in expected})
    for key, value in expected.items():  # the CSV holds 6 significant digits
        assert metrics["test"][key] == pytest.approx(value, rel=2e-4, abs=1e-6), key
        assert scalars[key] == pytest.approx(value, rel=2e-4, abs=1e-6), key


def max_abs_error_on_rank(rank: int, world_size: int, port: int, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        metric = MaxAbsoluteError()
        errors = [torch.tensor([0.5, -0.25, 0.1]), torch.tensor([0.2, -1.5, 0.3])][rank]  # the largest on rank 1
        for half in errors.split(2):
            metric.update(half, torch.zeros_like(half))
        value = metric.compute()
        torch.save({"local": errors.abs().max(), "reduced": value}, f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two gloo processes
def test_max_abs_error_is_reduced_to_the_largest_over_ranks(tmp_path):
    from tests.helpers import free_port

    results = str(tmp_path / "rank")
    mp.start_processes(max_abs_error_on_rank, args=(2, free_port(), results), nprocs=2, start_method="spawn")
    got = [torch.load(f"{results}.{rank}", weights_only=True) for rank in range(2)]
    assert [float(g["local"]) for g in got] == [0.5, 1.5]  # the ranks saw different shards
    assert [float(g["reduced"]) for g in got] == [1.5, 1.5]  # both report the maximum over all rows


def test_autoencoder_reconstruction_error_equals_numpy_on_the_reloaded_best_model(tmp_path):
    """The third task kind: test/recon_mse and test/loss in metrics.json equal the mean squared
    reconstruction error computed with numpy from the reloaded best checkpoint on the test rows."""
    from lightning_models import build
    from lightning_models.training.checkpoints import load_module

    config = CONFIGS / "iris_autoencoder.yaml"
    done = run_train(["fit", "--config", str(config), "--trainer.max_epochs=10", *QUIET], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(next(tmp_path.glob("lightning_logs/*/version_0/metrics.json")).read_text())
    model = load_module(metrics["checkpoints"]["best"])
    data = build(config, "--trainer.logger=false").datamodule  # the datamodule as the run built it
    data.setup()
    with torch.no_grad():
        parts = [(model(inputs).numpy(), targets.numpy()) for inputs, targets in data.test_dataloader()]
    reconstructed, measured = (np.concatenate(side) for side in zip(*parts))
    assert measured.shape == (75, 4)  # the raw measurements of the 75 test rows
    expected = float(((reconstructed - measured) ** 2).mean())
    assert metrics["test"]["test/recon_mse"] == pytest.approx(expected, rel=1e-5)
    assert metrics["test"]["test/loss"] == pytest.approx(expected, rel=1e-5)


def test_epoch_metrics_count_every_batch_once(tmp_path, monkeypatch):
    """With lr 0 (the weights never change) and batches of 2, an epoch's 30 training batches (the last 1-row
    validation batch too) feed the torchmetrics: train/val loss, accuracy and macro F1 must equal scikit-learn's
    on the whole split, every row counted once and the loss weighted by batch size."""
    from sklearn.metrics import accuracy_score, f1_score
    from torch.nn import functional as F

    from lightning_models import build
    from lightning_models.base import TaskModule

    monkeypatch.chdir(tmp_path)  # the run folder
    overrides = ["--trainer.max_epochs=1", "--trainer.logger=false",
                 "--model.init_args.updates_per_step=1", "--model.init_args.optimizer.init_args.lr=0",
                 "--data.init_args.batch_size=2", "--trainer.check_val_every_n_epoch=1",
                 "--trainer.num_sanity_val_steps=0", "--last_checkpoint=null", *QUIET]
    parts = build(CONFIGS / "iris_logistic_regression.yaml", *overrides)
    model, datamodule, trainer = parts.model, parts.datamodule, parts.trainer
    trainer.fit(model, datamodule=datamodule)
    assert isinstance(model, TaskModule) and len(datamodule.train_dataloader()) == 30
    for stage, loader in (("train", datamodule.train_dataloader()), ("val", datamodule.val_dataloader())):
        inputs, targets = (torch.cat(parts) for parts in zip(*loader))
        with torch.no_grad():
            logits = model.net(inputs)
        predicted = logits.argmax(1).numpy()
        expected = {f"{stage}/loss": F.cross_entropy(logits, targets).item(),
                    f"{stage}/acc": accuracy_score(targets.numpy(), predicted),
                    f"{stage}/f1": f1_score(targets.numpy(), predicted, average="macro")}
        assert 0.2 < expected[f"{stage}/acc"] < 1.0  # not a degenerate split: a lost batch would show
        for key, value in expected.items():
            assert float(trainer.callback_metrics[key]) == pytest.approx(value, rel=1e-5), key

