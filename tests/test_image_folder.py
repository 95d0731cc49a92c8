"""Bring your own images: ImageFolderDataModule on folders of PNGs the tests write."""

from __future__ import annotations

import csv
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import ImageFolderDataModule, image_folder
from datamodules.image_folder import Decoded
from lightning_models.checks import ConfigError
from tests.conftest import CONFIGS, fake_machine, run_train
from tests.helpers import IMAGE_CLASSES, assert_cross_validation, event_tags, write_folder

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_folder_names_are_classes_and_the_split_is_seeded_and_stratified(tmp_path):
    root = write_folder(tmp_path / "images")
    data = ImageFolderDataModule(str(root), val_fraction=0.2, test_fraction=0.2)
    assert data.class_names == IMAGE_CLASSES and data.num_features == 784 and data.num_outputs == 3
    data.setup()
    sizes = {split: len(labels) for split, (_, labels) in data.splits.items()}
    assert sizes == {"train": 72, "val": 24, "test": 24}
    for _, labels in data.splits.values():
        assert torch.bincount(labels, minlength=3).tolist() == [len(labels) // 3] * 3
    images, labels = data.splits["test"]
    assert images.dtype == torch.uint8 and images.shape == (24, 28, 28)
    # the decoded pixels are the files' pixels (read back independently with PIL)
    path, label = sorted(data.samples()["test"])[0]
    assert torch.equal(images[0], torch.from_numpy(np.array(Image.open(path)))) and labels[0] == label


def test_the_decoded_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "images", per_class=12)
    first = ImageFolderDataModule(str(root), batch_size=8)
    first.setup()
    [cache] = list((root / ".template-cache").glob("images-*.pt"))

    def no_decoding(self, index):
        raise AssertionError("decoded again although the cache is valid")

    second = ImageFolderDataModule(str(root), batch_size=8)
    assert second.num_features == 784  # the first image, decoded for its size, before decoding is forbidden
    monkeypatch.setattr(Decoded, "__getitem__", no_decoding)
    second.setup()
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first.splits.values(), second.splits.values()))
    monkeypatch.undo()
    changed = root / "bar" / "000.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(changed)
    os.utime(changed, ns=(10**18, 10**18))
    third = ImageFolderDataModule(str(root), batch_size=8)
    third.setup()
    assert len(list((root / ".template-cache").glob("images-*.pt"))) == 2 and cache.is_file()
    row = [path for path, _ in sorted(third.samples()["train"] + third.samples()["val"] + third.samples()["test"])].index(
        str(changed))
    everything = torch.cat([third.splits[s][0] for s in ("train", "val", "test")])
    assert (everything == 0).all(dim=(1, 2)).sum() == 1 and row >= 0  # the new black image is in


def test_given_train_val_test_folders_are_used_as_given(tmp_path):
    for split, count in (("train", 10), ("val", 4), ("test", 5)):
        write_folder(tmp_path / "images" / split, per_class=count, seed=len(split))
    data = ImageFolderDataModule(str(tmp_path / "images"))
    data.setup()
    assert {split: len(labels) for split, (_, labels) in data.splits.items()} == {"train": 30, "val": 12, "test": 15}


def test_colour_images_keep_three_channels_and_augment_alike(tmp_path):
    root = write_folder(tmp_path / "images", per_class=10, colour=True)
    data = ImageFolderDataModule(str(root), batch_size=30, augment=True, normalize=False)
    assert data.num_features == 3 * 784 and data.image_shape == (3, 28, 28)
    data.setup()
    images = data.splits["train"][0]
    assert images.shape == (24, 3, 28, 28)
    batches = data.batches("train", shuffle=True)
    augmented = batches.random_flip_and_crop(images)
    # every channel of an image moved the same way: channel 1 is still channel 0 halved, channel 2 its
    # inverse (except where the crop's zero padding came in, which is 0 in every channel)
    padding = (augmented == 0).all(dim=1)
    assert torch.equal(augmented[:, 1], augmented[:, 0] // 2)
    assert torch.equal(augmented[:, 2][~padding], 255 - augmented[:, 0][~padding])
    assert not torch.equal(augmented, images)
    inputs, _ = next(iter(batches))
    assert inputs.shape == (24, 3, 28, 28) and inputs.dtype == torch.float32


def test_example_config_trains_logs_the_image_panels_and_predicts_with_folder_names(tmp_path):
    write_folder(tmp_path / "images", per_class=60)
    # 32-bit pinned: the accuracy floor leaves room for one wrong test image, and bf16-mixed (what precision: auto
    # picks on a CPU with native bf16) trains to other weights
    done = run_train(["fit", "--config", str(CONFIGS / "examples" / "image_folder.yaml"), "--data.init_args.root", "images",
                      "--trainer.max_epochs=4", "--trainer.precision=32-true", *QUIET], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "image_folder" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] >= 0.9
    assert {"data/sample_images", "test/confusion_matrix", "test/per_class_accuracy"} <= event_tags(run)["images"]
    predicted = run_train(["predict", "--config", str(CONFIGS / "examples" / "image_folder.yaml"), "--data.init_args.root",
                           "images", "--ckpt_path", metrics["checkpoints"]["best"], *QUIET], tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    table = list(csv.DictReader((run / "predictions-test.csv").open()))
    assert {row["target"] for row in table} == set(IMAGE_CLASSES) and len(table) == 18


def test_beyond_the_memory_budget_images_stream_and_still_train(tmp_path):
    root = write_folder(tmp_path / "images", per_class=30)
    data = ImageFolderDataModule(str(root), batch_size=16, memory_budget=1e-12, num_workers=0)
    with pytest.warns(UserWarning, match="streaming"):
        data.setup()
    inputs, labels = next(iter(data.batches("train", shuffle=True)))
    assert inputs.shape == (16, 1, 28, 28) and labels.dtype == torch.int64
    assert not (root / ".template-cache").exists()
    # the same size rule as the cached path: another size is refused without image_size, resized with it
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "cross" / "029.png")
    options = {"batch_size": 200, "memory_budget": 1e-12, "num_workers": 0}
    with pytest.warns(UserWarning, match="streaming"), pytest.raises(ConfigError, match=r"cross/029.png: \(20, 24\) pixels"):
        data = ImageFolderDataModule(str(root), **options)
        data.setup()
        [batch for split in ("train", "val", "test") for batch in data.batches(split, shuffle=False)]
    data = ImageFolderDataModule(str(root), image_size=28, **options)
    with pytest.warns(UserWarning, match="streaming"):
        data.setup()
    images = torch.cat([inputs for split in ("train", "val", "test") for inputs, _ in data.batches(split, False)])
    assert images.shape == (90, 1, 28, 28)


def test_the_in_memory_path_budgets_against_each_rank_s_share_and_a_gpu_s_free_memory(monkeypatch):
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = torch.device("cpu")
    assert image_folder.memory_plan(int(0.3 * ram), cpu, 1, 0.5) == (True, f"memory_budget=0.5 of the RAM ({0.5 * ram / 1e6:.0f} MB)")
    fits, limit = image_folder.memory_plan(int(0.3 * ram), cpu, 2, 0.5)  # two ranks on this machine: each its quarter
    assert not fits and limit == f"memory_budget=0.5 of 1/2 of the RAM ({0.25 * ram / 1e6:.0f} MB)"
    fake_machine(monkeypatch, {"avx2"}, "T4", free_memory=4 << 30)
    gpu = torch.device("cuda", 0)
    assert image_folder.memory_plan(3 << 30, gpu, 1, 0.5) == (False, f"memory_budget=0.5 of the free memory of cuda:0 "
                                                                   f"({0.5 * (4 << 30) / 1e6:.0f} MB)")
    assert image_folder.memory_plan(1 << 30, gpu, 1, 0.5)[0]


def test_setup_says_which_path_it_chose_and_streams_pinned_beyond_the_gpu_s_memory(tmp_path, monkeypatch, caplog):
    root = write_folder(tmp_path / "images", per_class=10)
    data = ImageFolderDataModule(str(root), batch_size=8, num_workers=0)
    with caplog.at_level("INFO", logger="pytorch_lightning"):
        data.setup()
    assert re.search(r"30 decoded images \(0 MB\) in memory on cpu, within memory_budget=0.5 of the RAM", caplog.text)
    assert data.batches("train", shuffle=True).__class__.__name__ == "ImageBatches"
    fake_machine(monkeypatch, {"avx2"}, "T4", free_memory=30 * 784)  # less than twice the decoded set: over budget
    monkeypatch.setattr(ImageFolderDataModule, "device", property(lambda self: torch.device("cuda", 0)))
    data = ImageFolderDataModule(str(root), batch_size=8, num_workers=0)
    with pytest.warns(UserWarning, match=r"would exceed memory_budget=0.5 of the free memory of cuda:0 .*streaming"):
        data.setup()
    loader = data.batches("train", shuffle=True)
    assert loader.pin_memory  # pinned pages: Lightning's copies to the GPU are non-blocking


def test_statistics_come_from_exact_sums_and_the_normalisation_is_copied_to_a_device_once(tmp_path):
    root = write_folder(tmp_path / "colour", per_class=10, colour=True)
    data = ImageFolderDataModule(str(root), batch_size=8, num_workers=0)
    data.setup()
    train = data.splits["train"][0].double().div(255).transpose(0, 1).reshape(3, -1)  # an independent float64 reference
    torch.testing.assert_close(data.mean.double(), train.mean(1), atol=1e-7, rtol=0)
    torch.testing.assert_close(data.std.double(), train.std(1), atol=1e-7, rtol=0)
    first, again = data.scale(torch.device("cpu")), data.scale(torch.device("cpu"))
    assert first[0] is again[0] and first[1] is again[1] and first[0].shape == (1, 3, 1, 1)
    batch = data.splits["train"][0][:4]
    torch.testing.assert_close(data.to_inputs(batch), (batch.double() / 255 - data.mean.double().view(1, 3, 1, 1))
                               .div(data.std.double().view(1, 3, 1, 1)).float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("damage", ["undecodable", "mixed_sizes", "empty_class", "one_class", "missing"])
def test_bad_folders_are_one_clear_error(tmp_path, damage):
    root = tmp_path / "images"
    if damage != "missing":
        write_folder(root, per_class=5)
    named = str(root)
    if damage == "undecodable":
        (root / "bar" / "002.png").write_bytes(b"not a png")
        named = str(root / "bar" / "002.png")
    elif damage == "mixed_sizes":
        Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "cross" / "003.png")
        named = str(root / "cross" / "003.png")
    elif damage == "empty_class":
        (root / "empty").mkdir()
        named = "empty"
    elif damage == "one_class":
        for name in IMAGE_CLASSES[1:]:
            for path in (root / name).iterdir():
                path.unlink()
            (root / name).rmdir()
    data = ImageFolderDataModule(str(root), val_fraction=0.2, test_fraction=0.2)  # building reads nothing
    with pytest.raises(ConfigError) as error:
        data.setup()
    assert named in str(error.value), str(error.value)
    assert not (root / ".template-cache").exists() or damage not in ("undecodable", "mixed_sizes")


def test_the_folder_is_listed_once_and_decoded_only_in_setup(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "images", per_class=6)
    scans, decodes = [], []
    scan, read_image = image_folder.scan, image_folder.read_image
    monkeypatch.setattr(image_folder, "scan", lambda path: scans.append(path) or scan(path))
    monkeypatch.setattr(image_folder, "read_image", lambda path, mode: decodes.append(path) or read_image(path, mode))
    data = ImageFolderDataModule(str(root), color="grayscale", image_size=28, batch_size=4, val_fraction=0.2, test_fraction=0.2)
    assert scans == [] and decodes == []
    assert (data.num_features, data.num_outputs, data.class_names) == (784, 3, IMAGE_CLASSES)
    assert len(scans) == 1 and decodes == []  # listed; sizes given, so nothing decoded
    data.setup()
    assert len(scans) == 1 and len(decodes) == 18
    with pytest.raises(ConfigError, match="root='/.*/nowhere': no such folder"):
        _ = ImageFolderDataModule("nowhere").num_features


@pytest.mark.parametrize(("options", "named"), [
    ({"test_fraction": 0.0}, "test_fraction=0"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction < 1"),
])
def test_fractions_that_leave_no_split_are_refused(tmp_path, options, named):
    root = write_folder(tmp_path / "images", per_class=5)
    with pytest.raises(ConfigError, match=re.escape(named)):
        ImageFolderDataModule(str(root), **options).setup()


def test_bad_augmentation_options_are_refused():
    with pytest.raises(ConfigError, match="augment_from_epoch=-1"):
        ImageFolderDataModule("not_read", augment_from_epoch=-1)


@pytest.mark.parametrize("given", [False, True])
def test_image_folds_divide_the_non_test_images_stratified_and_leave_the_test_images(tmp_path, given):
    if given:  # train and val folders are dealt into the folds together
        for split, count in (("train", 8), ("val", 4), ("test", 3)):
            write_folder(tmp_path / "images" / split, per_class=count, seed=len(split))
    else:
        write_folder(tmp_path / "images", per_class=20)
    options = {"root": str(tmp_path / "images"), "normalize": False, "cache_dir": str(tmp_path / "cache")}
    plain = ImageFolderDataModule(**options)
    plain.setup()
    label_of = {}  # every image named by its (random, distinct) pixels
    for path in (tmp_path / "images").rglob("*.png"):
        label_of[np.array(Image.open(path)).tobytes()] = IMAGE_CLASSES.index(path.parent.name)
    test = [image.numpy().tobytes() for image in plain.splits["test"][0]]
    if given:
        assert sorted(test) == sorted(np.array(Image.open(p)).tobytes() for p in (tmp_path / "images" / "test").rglob("*.png"))
    rest = sorted(set(label_of) - set(test))
    fold_rows = []
    for fold in range(3):
        data = ImageFolderDataModule(fold=fold, folds=3, **options)
        data.setup()
        assert all(torch.equal(a, b) for a, b in zip(data.splits["test"], plain.splits["test"]))
        for split in ("train", "val"):
            images, labels = data.splits[split]
            assert labels.tolist() == [label_of[image.numpy().tobytes()] for image in images]
        fold_rows.append(tuple([image.numpy().tobytes() for image in data.splits[split][0]] for split in ("train", "val")))
    assert_cross_validation(fold_rows, rest, label_of, 3)
    scaled = ImageFolderDataModule(fold=1, folds=3, **{**options, "normalize": True})
    scaled.setup()  # normalised with the fold's training images only
    train = torch.stack([torch.frombuffer(bytearray(row), dtype=torch.uint8) for row in fold_rows[1][0]]).float() / 255
    torch.testing.assert_close(scaled.mean, train.mean().view(1))
