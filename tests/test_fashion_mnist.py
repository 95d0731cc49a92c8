"""Fashion-MNIST datamodule on tiny IDX files the tests write, image panels, and a slow real-data run."""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from datamodules import FashionMNISTDataModule
from datamodules.fashion_mnist import DatasetError
from datamodules.images import ImageBatches
from lightning_models import ClassificationModule
from lightning_models.callbacks import MisclassifiedImagesPanel
from lightning_models.nets import FashionCNN
from tests.conftest import CONFIGS, SHARED_DATA, run_train
from tests.helpers import event_tags, write_idx

NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def make(folder: Path, **options) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule(data_dir=str(folder), download=False, **options)
    dm.prepare_data()
    dm.setup()
    return dm


def test_loads_extracted_files_with_a_seeded_validation_split(tmp_path):
    dm = make(write_idx(tmp_path), val_size=16, batch_size=8)
    train, val = dm.split_indices["train"], dm.split_indices["val"]
    assert len(train) == 80 and len(val) == 16 and not set(train.tolist()) & set(val.tolist())
    assert dm.splits["test"][0].shape == (32, 28, 28)
    again = make(tmp_path, val_size=16, batch_size=8)
    assert torch.equal(again.split_indices["val"], val)
    assert not torch.equal(make(tmp_path, val_size=16, seed=1).split_indices["val"], val)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32
    raw = dm.splits["val"][0][:8].float().div(255).unsqueeze(1)
    torch.testing.assert_close(x, (raw - 0.2860) / 0.3530)


def test_gz_only_folder_is_extracted(tmp_path):
    dm = make(write_idx(tmp_path, gz=True), val_size=16)
    assert dm.root == tmp_path
    assert all((tmp_path / "FashionMNIST" / "raw" / name).is_file() for name in NAMES)
    assert dm.splits["train"][0].shape == (80, 28, 28)


def test_read_only_folder_extracts_elsewhere(tmp_path):
    write_idx(tmp_path / "ro", gz=True)
    raw = tmp_path / "ro" / "FashionMNIST" / "raw"
    os.chmod(raw, stat.S_IRUSR | stat.S_IXUSR)
    try:
        dm = make(tmp_path / "ro", val_size=16)
        assert dm.root != tmp_path / "ro"
        assert sorted(p.name for p in raw.iterdir()) == sorted(f"{name}.gz" for name in NAMES)  # untouched
        assert dm.splits["test"][0].shape == (32, 28, 28)
    finally:
        os.chmod(raw, stat.S_IRWXU)


def test_missing_data_names_folder_files_and_option(tmp_path):
    with pytest.raises(DatasetError) as caught:
        make(tmp_path / "nowhere")
    message = str(caught.value)
    assert str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in message
    assert all(name in message for name in NAMES) and "--data.data_dir" in message


def test_empty_data_folder_is_the_same_clear_error(tmp_path):
    (tmp_path / "FashionMNIST" / "raw").mkdir(parents=True)
    with pytest.raises(DatasetError) as caught:
        make(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "--data.data_dir" in message
    assert all(name in message for name in NAMES)


@pytest.mark.parametrize("damage", ["truncate", "header", "gzip"])
def test_corrupted_files_are_named(tmp_path, damage):
    write_idx(tmp_path, gz=damage == "gzip")
    raw = tmp_path / "FashionMNIST" / "raw"
    target = raw / ("t10k-images-idx3-ubyte" + (".gz" if damage == "gzip" else ""))
    blob = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(blob[:-100])
    elif damage == "header":
        target.write_bytes(struct.pack(">IIII", 2051, 32, 32, 32) + blob[16:])
    else:
        target.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=str(target.name)):
        make(tmp_path)
    assert not (raw / "t10k-images-idx3-ubyte.partial").exists()


def test_augmentation_keeps_shape_and_is_seeded():
    images = torch.randint(0, 256, (16, 28, 28), dtype=torch.uint8)
    labels = torch.arange(16)
    first = ImageBatches(images, labels, 16, True, seed=3, transform=lambda x: x.float(), augment=True)
    second = ImageBatches(images, labels, 16, True, seed=3, transform=lambda x: x.float(), augment=True)
    (a, la), (b, lb) = next(iter(first)), next(iter(second))
    assert a.shape == (16, 28, 28) and torch.equal(a, b) and torch.equal(la, lb)
    originals = images[la].float()
    assert not torch.equal(a, originals)  # something moved
    assert bool((a.sum((1, 2)) <= originals.sum((1, 2)) + 1e-3).all())  # crops only drop pixels, never invent


def test_augmentation_starts_at_augment_from_epoch():
    images = torch.randint(0, 256, (32, 28, 28), dtype=torch.uint8)
    labels = torch.arange(32)
    batches = ImageBatches(images, labels, 32, True, seed=0, transform=lambda x: x.float(), augment=True, augment_from_epoch=2)
    epochs = [next(iter(batches)) for _ in range(3)]  # without a trainer each pass is the next epoch
    for clean, order in epochs[:2]:
        assert torch.equal(clean, images[order].float())  # epochs 0 and 1: the images as they are
    augmented, order = epochs[2]
    assert not torch.equal(augmented, images[order].float())


@pytest.mark.parametrize(("options", "named"), [
    ({"augment_from_epoch": -1}, "augment_from_epoch=-1"),
    ({"crop_padding": -1}, "crop_padding=-1"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"augment": True, "augment_from_epoch": 2, "input_path": "torchvision"}, "input_path=tensor"),
])
def test_bad_augmentation_options_are_refused(options, named):
    from lightning_models.checks import ConfigError

    with pytest.raises(ConfigError, match=named):
        FashionMNISTDataModule(**options)


class PlantedClassifier(ClassificationModule):
    """Predicts class (i + 1) % 10 for images whose index i is a multiple of 3, else the true class i % 10."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.round(x[:, 0, 0, 0] * 0.3530 * 255 + 0.2860 * 255).long()
        predicted = torch.where(index % 3 == 0, (index + 1) % 10, index % 10)
        return torch.nn.functional.one_hot(predicted, 10).float() * 10


def test_misclassified_panel_captions_and_tag(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(write_idx(tmp_path)), val_size=16, batch_size=8, download=False)
    panel = MisclassifiedImagesPanel(max_images=5)
    logger = TensorBoardLogger(str(tmp_path / "logs"), name="planted")
    trainer = pl.Trainer(logger=logger, callbacks=[panel], enable_progress_bar=False, accelerator="cpu")
    trainer.test(PlantedClassifier(num_features=784, num_outputs=10, net=FashionCNN), datamodule=dm)
    names = FashionMNISTDataModule.class_names
    expected = [f"{names[i % 10]}, pred={names[(i + 1) % 10]}" for i in range(0, 32, 3)][:5]
    assert panel.captions == expected
    assert "test/misclassified" in event_tags(Path(logger.log_dir))["images"]


def test_one_step_cli_run_logs_the_image_panels(tmp_path):
    write_idx(tmp_path / "tiny")
    done = run_train(["fit", "--config", str(CONFIGS / "fashion_cnn.yaml"), "--data.data_dir", str(tmp_path / "tiny"),
                      "--data.val_size", "16", "--data.batch_size", "16", "--data.download", "false",
                      "--trainer.max_steps", "1", "--trainer.enable_progress_bar=false"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "lightning_logs" / "fashion_cnn" / "version_0"
    images = event_tags(run_dir)["images"]
    assert {"data/sample_images", "test/misclassified", "test/confusion_matrix", "test/per_class_accuracy"} <= images
    # One step never reaches fit's validation, and the best checkpoint's re-validation after fit draws no panel.
    assert "val/misclassified" not in images
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 1


def test_cli_missing_data_is_one_clear_error(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "fashion_cnn.yaml"), "--data.data_dir", str(tmp_path / "none"),
                      "--data.download", "false"], tmp_path)
    assert done.returncode != 0
    assert "Fashion-MNIST not found" in done.stderr and "--data.data_dir" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "FashionMNIST" / "raw").is_dir() and not os.environ.get("CI"),
                    reason=f"real data not in {SHARED_DATA}")  # in CI (CI=true) missing data fails the test instead
def test_real_data_one_epoch_on_a_subset(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "source" / "fashion_cnn.yaml"), "--data.data_dir", str(SHARED_DATA),
                      "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "200",
                      "--trainer.limit_val_batches", "20", "--trainer.enable_progress_bar=false"], tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "lightning_logs" / "fashion_cnn_source" / "version_0" / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] >= 0.80
