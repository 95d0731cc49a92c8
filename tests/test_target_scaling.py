"""Regression targets standardised with the training rows' mean and std (``standardize_target``): the net fits the
standardised target, while the metrics, the checkpoint's predictions and its exports are in the target's units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, r2_score

from datamodules import CSVDataModule, IrisDataModule
from lightning_models import load, run
from lightning_models.checks import ConfigError
from lightning_models.inference.export import export, load_export
from lightning_models.regression import RegressionModule
from lightning_models.training.checkpoints import load_module
from tests.conftest import CONFIGS
from tests.helpers import write_csv

EXAMPLE = CONFIGS / "examples" / "csv_regression.yaml"
QUIET = ["--trainer.precision=32-true", "--progress_bar=null", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", "--trainer.callbacks=[]", "--trainer.logger=false"]
HEADER = ["a", "colour", "b", "y"]


def mileage_like(path: Path, rows: int = 300) -> list[dict[str, str]]:
    """y = 21.5 + 4 a - 3 b + 2 [colour = red] + 1.5 a^2 + noise: a target of mean about 23, far from the 0 a net
    starts at, with a bend a linear model misses."""
    generator = np.random.default_rng(0)
    a, b = generator.normal(size=rows), generator.normal(size=rows)
    colour = generator.choice(["red", "green", "blue"], size=rows)
    y = 21.5 + 4 * a - 3 * b + 2 * (colour == "red") + 1.5 * a**2 + generator.normal(scale=2.4, size=rows)
    table = [dict(zip(HEADER, (f"{p:.5f}", str(c), f"{q:.5f}", f"{t:.5f}"))) for p, c, q, t in zip(a, colour, b, y)]
    write_csv(path, HEADER, [[row[name] for name in HEADER] for row in table])
    return table


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The csv_regression example (standardize_target: true) in its default epochs on ``mileage_like``; the run, the
    set-up datamodule and the table's rows."""
    folder = tmp_path_factory.mktemp("target")
    table = mileage_like(folder / "table.csv")
    options = [f"--data.init_args.path={folder / 'table.csv'}", "--data.init_args.categorical=[colour]",
               f"--trainer.default_root_dir={folder}"]
    result = run(EXAMPLE, *options, *QUIET)
    data = CSVDataModule(str(folder / "table.csv"), target="y", categorical=["colour"], task="regression",
                         batch_size=32, standardize_target=True)
    data.setup()
    return result, data, table


def test_the_example_reaches_linear_regression_on_the_same_held_out_split(trained):
    result, data, _ = trained
    rows = data.row_indices()
    inputs, targets = data.encoded.inputs, data.table.targets[:, 0]
    baseline = r2_score(targets[rows["test"]], LinearRegression().fit(inputs[rows["train"]], targets[rows["train"]])
                        .predict(inputs[rows["test"]]))
    assert abs(targets.mean() - 23) < 1 and baseline > 0.6  # the table is what the test means it to be
    assert result.metrics["test"]["test/r2"] >= baseline


def test_buffers_metrics_and_predictions_are_in_the_targets_units(trained):
    result, data, table = trained
    checkpoint = Path(result.checkpoints["best"])
    train_targets = data.table.targets[data.row_indices()["train"], 0].astype(np.float64)
    module = load_module(checkpoint)
    torch.testing.assert_close(module.target_mean, torch.tensor([train_targets.mean()], dtype=torch.float32))
    torch.testing.assert_close(module.target_std, torch.tensor([train_targets.std(ddof=1)], dtype=torch.float32))

    test_rows = [table[index] for index in data.row_indices()["test"]]
    predicted = load(checkpoint).predict(test_rows).outputs[:, 0]
    observed = np.array([float(row["y"]) for row in test_rows])
    assert abs(predicted.mean() - observed.mean()) < 2  # units, not standard units
    metrics = result.metrics["test"]
    assert mean_squared_error(observed, predicted) == pytest.approx(metrics["test/mse"], rel=1e-4)
    assert r2_score(observed, predicted) == pytest.approx(metrics["test/r2"], abs=1e-4)
    assert np.abs(observed - predicted).max() == pytest.approx(metrics["test/max_abs_error"], rel=1e-4)
    # the loss is the net's, on the standardised scale: the mse divided by the training std squared
    assert metrics["test/loss"] == pytest.approx(metrics["test/mse"] / train_targets.std(ddof=1) ** 2, rel=1e-3)


def test_an_export_answers_in_the_targets_units(trained, tmp_path):
    result, data, table = trained
    checkpoint = Path(result.checkpoints["best"])
    rows = [table[index] for index in data.row_indices()["test"]]
    export(checkpoint, tmp_path / "export", "torch-export")
    np.testing.assert_allclose(load_export(tmp_path / "export").predict(rows).outputs, load(checkpoint).predict(rows).outputs,
                               rtol=1e-5, atol=1e-4)


def test_a_checkpoint_from_before_the_buffers_loads_with_mean_0_and_std_1(trained, tmp_path):
    result, data, table = trained
    saved = torch.load(result.checkpoints["best"], weights_only=True)
    for name in ("target_mean", "target_std"):
        del saved["state_dict"][name]
    torch.save(saved, tmp_path / "old.ckpt")
    module = load_module(tmp_path / "old.ckpt")
    assert module.target_mean.tolist() == [0.0] and module.target_std.tolist() == [1.0]
    x = torch.randn(5, module.hparams.num_features)
    assert torch.equal(module(x), module.net(x))  # what the net alone answered before
    assert load(tmp_path / "old.ckpt").predict(table[:3]).outputs.shape == (3, 1)


def test_without_standardize_target_the_module_is_its_net():
    data = IrisDataModule(target="petal_width")
    data.setup()
    assert data.target_mean is None and data.target_std is None
    module = RegressionModule(3)
    x = torch.randn(4, 3)
    assert torch.equal(module(x), module.net(x))
    scaled = IrisDataModule(target="petal_width", standardize_target=True)
    scaled.setup()
    train = torch.from_numpy(scaled.arrays()[1][scaled.row_indices()["train"]])
    torch.testing.assert_close(scaled.target_mean, train.mean(0))
    torch.testing.assert_close(scaled.target_std, train.std(0))


def test_standardize_target_refuses_class_labels(tmp_path):
    path = write_csv(tmp_path / "classes.csv", ["a", "label"], [[index, "xy"[index % 2]] for index in range(40)])
    with pytest.raises(ConfigError, match=r"standardize_target=True: CSVDataModule's targets are class labels"):
        CSVDataModule(str(path), target="label", standardize_target=True).setup()
