import inspect
import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from datamodules import (
    CSVDataModule,
    FashionMNISTDataModule,
    FunctionDataModule,
    ImageFolderDataModule,
    IrisDataModule,
    PlaneDataModule,
    TensorBatches,
    TensorDataModule,
)
from datamodules.tensor import stratified_split
from lightning_models.checks import ConfigError
from tests.helpers import assert_cross_validation


def test_odd_even_partition_is_the_source_texts():
    dm = IrisDataModule(val_fraction=0.0)
    rows = dm.row_indices()
    assert list(rows["test"]) == list(range(0, 150, 2))
    assert list(rows["train"]) == list(range(1, 150, 2))
    assert list(rows["val"]) == list(rows["train"])  # no validation part: validate on train rows


@pytest.mark.parametrize("partition", ["odd_even", "stratified"])
def test_validation_part_is_disjoint_seeded_and_stratified(partition):
    rows = IrisDataModule(partition=partition, val_fraction=0.2, seed=3).row_indices()
    train, val, test = (set(rows[name]) for name in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 150
    species = np.repeat([0, 1, 2], 50)
    assert np.bincount(species[rows["val"]], minlength=3).tolist() == [len(val) // 3] * 3
    again = IrisDataModule(partition=partition, val_fraction=0.2, seed=3).row_indices()
    other = IrisDataModule(partition=partition, val_fraction=0.2, seed=4).row_indices()
    assert all((again[k] == rows[k]).all() for k in rows)
    assert any(len(other[k]) != len(rows[k]) or (other[k] != rows[k]).any() for k in rows)


def test_scaling_is_fitted_on_training_rows_only():
    dm = IrisDataModule(target="species", val_fraction=0.2)
    dm.setup("fit")
    inputs, _, _ = dm.arrays()
    raw_train = torch.from_numpy(inputs[dm.row_indices()["train"]])
    assert torch.allclose(dm.mean, raw_train.mean(0))
    assert torch.allclose(dm.std, raw_train.std(0))
    train_x = dm.splits["train"][0]
    assert torch.allclose(train_x.mean(0), torch.zeros(4), atol=1e-5)
    assert not torch.allclose(dm.splits["test"][0].mean(0), torch.zeros(4), atol=1e-2)


def test_targets_and_sizes_per_task():
    for target, features, outputs in [("species", 4, 3), ("petal_width", 3, 1), ("features", 4, 4)]:
        dm = IrisDataModule(target=target, val_fraction=0.0)
        dm.setup()
        x, y = dm.splits["train"]
        assert (dm.num_features, dm.num_outputs) == (features, outputs) == (x.shape[1], y.shape[-1] if y.ndim > 1 else 3)
    dm = IrisDataModule(target="features", standardize=True, val_fraction=0.0)
    dm.setup()
    x, y = dm.splits["test"]
    raw = torch.from_numpy(dm.arrays()[0][0:150:2])
    assert torch.equal(y, raw)  # autoencoder targets stay in centimetres
    assert not torch.allclose(x, raw)


def test_bad_options_name_value_and_choices():
    with pytest.raises(ConfigError, match=r"target='colour'.*species"):
        IrisDataModule(target="colour")
    with pytest.raises(ConfigError, match=r"partition='random'.*odd_even"):
        IrisDataModule(partition="random")
    with pytest.raises(ConfigError, match=r"val_fraction=1\.5"):
        IrisDataModule(val_fraction=1.5)
    with pytest.raises(ConfigError, match=r"batch_size=0"):
        IrisDataModule(batch_size=0)


def test_non_finite_features_are_rejected():
    class Broken(TensorDataModule):
        def load_splits(self):
            x = torch.ones(4, 2)
            x[2, 1] = float("nan")
            y = torch.zeros(4)
            return {"train": (x, y), "val": (x, y), "test": (x, y)}

    with pytest.raises(ConfigError, match="NaN or inf"):
        Broken().setup()


def test_tensor_batches_full_and_mini_batches():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    full = list(TensorBatches(x, y, None, shuffle=False, seed=0))
    assert len(full) == 1 and full[0][0] is x
    batches = TensorBatches(x, y, 4, shuffle=True, seed=0)
    first, second = [torch.cat([b[1] for b in batches]) for _ in range(2)]
    assert len(batches) == 3 and sorted(first.tolist()) == list(range(10))
    assert not torch.equal(first, second)  # a new order every epoch
    again = TensorBatches(x, y, 4, shuffle=True, seed=0)
    assert torch.equal(torch.cat([b[1] for b in again]), first)  # same seed, same order


def test_ranks_are_dealt_disjoint_equal_shares_of_one_epoch_order():
    from datamodules.tensor import epoch_order

    for count, world_size in ((10, 2), (11, 2), (150, 3), (7, 4)):
        shares = [epoch_order(count, torch.Generator(), 5, 3, True, rank, world_size) for rank in range(world_size)]
        assert len({len(share) for share in shares}) == 1 and len(shares[0]) == count // world_size  # equal steps
        dealt = torch.cat(shares)
        assert len(set(dealt.tolist())) == len(dealt)  # no row on two ranks
        whole = epoch_order(count, torch.Generator(), 5, 3, True, 0, 1)  # the one-process order of the same epoch
        assert set(dealt.tolist()) == set(whole[: count - count % world_size].tolist())
        for rank, share in enumerate(shares):  # rank r takes every world_size-th row of that order
            assert share.tolist() == whole[: count - count % world_size][rank::world_size].tolist()
    other_epoch = epoch_order(150, torch.Generator(), 5, 4, True, 0, 3)
    assert other_epoch.tolist() != epoch_order(150, torch.Generator(), 5, 3, True, 0, 3).tolist()


def test_stratified_split_is_seeded_keeps_each_class_share_and_draws_nothing_at_zero():
    labels = np.repeat([0, 1, 2], [30, 60, 10])
    rows = np.arange(100)
    kept, drawn = stratified_split(rows, 0.2, labels, seed=1)
    assert np.bincount(labels[drawn], minlength=3).tolist() == [6, 12, 2]
    assert sorted([*kept, *drawn]) == list(range(100))
    assert all(np.array_equal(a, b) for a, b in zip(stratified_split(rows, 0.2, labels, seed=1), (kept, drawn)))
    assert not np.array_equal(np.sort(stratified_split(rows, 0.2, labels, seed=2)[1]), np.sort(drawn))
    everything, nothing = stratified_split(rows, 0.0, labels, seed=1)
    assert everything is rows and len(nothing) == 0
    # a list of (file, class) pairs, as the image folder splits, gets the same draw as their row numbers
    items = [(f"{row:03d}.png", int(label)) for row, label in zip(rows, labels)]
    assert [items.index(item) for item in stratified_split(items, 0.2, labels.tolist(), seed=1)[1]] == drawn.tolist()
    with pytest.raises(ValueError):  # a class of one cannot be divided
        stratified_split(rows[:11], 0.5, np.array([0] * 10 + [1]), seed=0)


def test_iris_class_names_are_known_when_built():
    assert IrisDataModule().class_names == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(("options", "folds"), [({"val_fraction": 0.2}, 5), ({"val_fraction": 0.0, "partition": "stratified",
                                                                            "test_fraction": 0.2, "seed": 4}, 3)])
def test_iris_folds_divide_the_non_test_rows_and_leave_the_test_rows(options, folds):
    plain = IrisDataModule(standardize=False, **options)
    plain.setup()
    raw, species = (torch.from_numpy(array) for array in load_iris(return_X_y=True))
    test_rows = plain.row_indices()["test"].tolist()  # iris holds a duplicate flower: rows are named by number
    assert torch.equal(plain.splits["test"][0], raw[test_rows].float())
    if options.get("partition") != "stratified":
        assert test_rows == list(range(0, 150, 2))  # the source texts' even rows stay the test rows
    rest = sorted(set(range(150)) - set(test_rows))
    fold_rows = []
    for fold in range(folds):
        data = IrisDataModule(standardize=False, fold=fold, folds=folds, **options)
        data.setup()
        rows = data.row_indices()
        assert all(torch.equal(a, b) for a, b in zip(data.splits["test"], plain.splits["test"]))
        assert torch.equal(data.splits["val"][0], raw[rows["val"]].float()) and torch.equal(data.splits["val"][1], species[rows["val"]])
        assert torch.equal(data.splits["train"][0], raw[rows["train"]].float())
        fold_rows.append((rows["train"].tolist(), rows["val"].tolist()))
    assert_cross_validation(fold_rows, rest, dict(enumerate(species.tolist())), folds)
    scaled = IrisDataModule(fold=1, folds=folds, **options)  # statistics from the fold's training rows only
    scaled.setup()
    torch.testing.assert_close(scaled.mean, raw[fold_rows[1][0]].float().mean(0))


def test_bad_fold_options_are_one_clear_error():
    for options, named in [({"folds": 1}, "folds=1"), ({"fold": 5}, "fold=5"), ({"fold": -1, "folds": 3}, "fold=-1"),
                           ({"fold": 0, "folds": 2.5}, "folds=2.5"), ({"fold": 1.0}, "fold=1.0")]:
        with pytest.raises(ConfigError, match=re.escape(named)):
            IrisDataModule(**options)
    with pytest.raises(ConfigError, match=r"folds=40 is more than the 25 rows of class 0"):
        IrisDataModule(fold=0, folds=40, val_fraction=0.0).setup()
    assert "fold" not in inspect.signature(FashionMNISTDataModule).parameters and FashionMNISTDataModule.why_no_folds
    assert "fold" not in inspect.signature(FunctionDataModule).parameters and FunctionDataModule.why_no_folds
    for datamodule in (IrisDataModule, CSVDataModule, PlaneDataModule, ImageFolderDataModule):
        assert {"fold", "folds"} <= set(inspect.signature(datamodule).parameters) and not hasattr(datamodule, "why_no_folds")
