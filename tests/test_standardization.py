"""Standardisation that cannot explode: a column that does not vary over the training rows gets scale 1 (as in
scikit-learn's StandardScaler), and a categorical level only validation or test rows hold is all zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from datamodules import CSVDataModule
from datamodules.tensor import TensorDataModule
from lightning_models import load, run
from lightning_models.inference.prediction_inputs import PredictionInputError
from tests.conftest import CONFIGS
from tests.helpers import write_csv

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.precision=32-true",
         "--trainer.callbacks=[]", "--trainer.logger=false"]


class Given(TensorDataModule):
    """The splits as given: train, val and test inputs, zero targets."""

    def __init__(self, train: torch.Tensor, test: torch.Tensor) -> None:
        super().__init__()
        self.given = train, test

    def load_splits(self):
        train, test = self.given
        return {"train": (train, torch.zeros(len(train), 1)), "val": (test, torch.zeros(len(test), 1)),
                "test": (test, torch.zeros(len(test), 1))}


def test_a_column_constant_in_the_training_rows_gets_scale_one_and_a_warning_naming_it():
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(50, 4, generator=generator)
    train[:, 1] = 0.0  # e.g. a one-hot level no training row has
    train[:, 3] = 123456.7  # constant at a large magnitude: its float32 spread is rounding, not signal
    test = torch.randn(10, 4, generator=generator)
    test[:, 1], test[:, 3] = 1.0, 123457.7
    data = Given(train, test)
    with pytest.warns(UserWarning, match=r"input column\(s\) x1, x3 do not vary over the training rows"):
        data.setup()
    reference = StandardScaler().fit(train.double().numpy())  # its scale_ is 1 where a column does not vary
    assert data.std[[1, 3]].tolist() == [1.0, 1.0] == reference.scale_[[1, 3]].tolist()
    torch.testing.assert_close(data.std[[0, 2]], train[:, [0, 2]].std(0))  # the others: the sample std, as before
    test_inputs = data.splits["test"][0]
    assert test_inputs[:, 1].tolist() == [1.0] * 10  # 1 - 0, not 1 / 1e-8
    torch.testing.assert_close(test_inputs[:, 3], torch.ones(10), atol=0.02, rtol=0)
    one = Given(torch.full((50, 1), 123456.7), torch.full((3, 1), 123457.7))
    with pytest.warns(UserWarning, match="x0 do not vary"):  # float32's std of one such column is rounding, not 0
        one.setup()
    assert one.std.tolist() == [1.0] and one.splits["test"][0].flatten().tolist() == pytest.approx([1.0] * 3, abs=0.02)


def test_a_varying_column_is_standardised_as_before_and_warns_nothing(recwarn):
    train = torch.tensor([[1.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    data = Given(train, train)
    data.setup()
    assert not [w for w in recwarn if "do not vary" in str(w.message)]
    torch.testing.assert_close(data.splits["train"][0], (train - train.mean(0)) / train.std(0))


def level_only_in_test(path, rows: int = 300):
    """y = 23 + 4 a - 3 b + 2 [colour = red] + noise, the split a column; colour purple occurs in test rows only."""
    generator = np.random.default_rng(0)
    a, b = generator.normal(size=rows), generator.normal(size=rows)
    colour = generator.choice(["red", "green", "blue"], size=rows).astype(object)
    split = generator.choice(["train", "val", "test"], size=rows, p=[0.7, 0.15, 0.15])
    colour[(split == "test") & (generator.random(rows) < 0.3)] = "purple"
    y = 23 + 4 * a - 3 * b + 2 * (colour == "red") + generator.normal(scale=0.3, size=rows)
    write_csv(path, ["a", "colour", "b", "split", "y"], [[f"{p:.5f}", c, f"{q:.5f}", s, f"{t:.5f}"]
                                                         for p, c, q, s, t in zip(a, colour, b, split, y)])
    return a, b, colour, split, y


def test_a_level_only_test_rows_hold_is_all_zeros_and_the_test_metrics_stay_sane(tmp_path, monkeypatch):
    a, b, colour, split, y = level_only_in_test(tmp_path / "table.csv")
    assert "purple" in colour[split == "test"] and "purple" not in colour[split != "test"]
    data = CSVDataModule(str(tmp_path / "table.csv"), target="y", categorical=["colour"], split_column="split", test_fraction=0)
    data.setup()
    assert data.prediction_inputs()["categorical"] == {"colour": ["blue", "green", "red"]}  # the training rows' levels
    purple = colour[split == "test"] == "purple"
    raw_test = data.raw_inputs["test"]
    assert raw_test[torch.from_numpy(purple)][:, 1:4].abs().sum() == 0  # a level the model never saw: all zeros
    assert torch.isfinite(data.splits["test"][0]).all() and data.splits["test"][0].abs().max() < 10

    monkeypatch.chdir(tmp_path)
    result = run(CONFIGS / "examples" / "csv_regression.yaml", "--data.init_args.path=table.csv", "--data.init_args.categorical=[colour]",
                 "--data.init_args.split_column=split", "--data.init_args.test_fraction=0", "--trainer.max_epochs=8", *QUIET)
    metrics = result.metrics
    # scikit-learn on the same split and encoding fits it well; the model's short run is near it, and far from the
    # R2 of -1e10 that a scale of 1e-8 on the unseen level's column gave
    x = {name: data.raw_inputs[name].numpy() for name in ("train", "test")}
    baseline = r2_score(y[split == "test"], LinearRegression().fit(x["train"], y[split == "train"]).predict(x["test"]))
    assert baseline > 0.9 and 0.8 < metrics["test"]["test/r2"] <= 1
    assert metrics["test"]["test/max_abs_error"] < 5

    with pytest.raises(PredictionInputError, match=r"'purple' is not a level seen in training \(blue, green, red\)"):
        load(result.folder).predict([{"a": 0.1, "b": 0.2, "colour": "purple"}])
