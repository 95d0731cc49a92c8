"""``load(checkpoint).predict(raw inputs)`` and ``scripts/predict.py``: the checkpoint alone predicts (data and config
deleted first), equal to the trained module on the datamodule's own preprocessing of the same inputs."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_models import build, load, run
from lightning_models.inference.prediction_inputs import PredictionInputError
from lightning_models.training.checkpoints import CheckpointError, load_module
from tests.conftest import CONFIGS, ROOT
from tests.helpers import run_script, write_csv, write_folder, write_idx

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.precision=32-true", "--trainer.callbacks=[]", "--trainer.logger=false"]
FLOWERS = [{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5},
           {"petal_width": 2.4, "sepal_length": 6.7, "sepal_width": 3.1, "petal_length": 5.6, "note": "ignored"}]


def trained(folder: Path, config: str | Path, *options: str) -> tuple[Path, object]:
    """Train in ``folder``; the best checkpoint and the run's datamodule (set up, for the reference)."""
    result = run(config, *QUIET, *options)
    datamodule = build(config, *QUIET, *options).datamodule
    datamodule.setup("fit")
    return Path(result.checkpoints["best"] or result.checkpoints["last"]), datamodule


def gone(*paths: Path) -> None:
    """The training data and the config deleted, as on a machine that has only the checkpoint."""
    for path in paths:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def test_the_two_flowers_from_the_checkpoint_alone(tmp_path, monkeypatch):
    """Iris from a CSV copy, then the CSV and the configs deleted: the two new flowers get the classes and
    probabilities of the module evaluated on the datamodule's standardised inputs."""
    monkeypatch.chdir(tmp_path)
    from sklearn.datasets import load_iris

    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    table = write_csv(tmp_path / "iris.csv", [*names, "species"],
                      [[*row, iris.target_names[label]] for row, label in zip(iris.data.tolist(), iris.target)])
    config = tmp_path / "iris.yaml"
    shutil.copy(CONFIGS / "iris_mlp_classifier.yaml", config)
    options = ["--data=datamodules.CSVDataModule", f"--data.init_args.path={table}", "--data.init_args.target=species",
               ]
    checkpoint, datamodule = trained(tmp_path / "run", config, *options)
    raw = torch.tensor([[flower[name] for name in names] for flower in FLOWERS])
    module = load_module(checkpoint)
    expected = module(datamodule.standardize_inputs(raw)).softmax(-1).detach().numpy()
    gone(table, config, *checkpoint.parent.parent.glob("config.yaml"))

    predictions = load(checkpoint).predict(FLOWERS)

    assert predictions.labels == [datamodule.class_names[i] for i in expected.argmax(1)] == ["versicolor", "virginica"]
    np.testing.assert_allclose(predictions.outputs, expected, atol=1e-6)
    assert predictions.columns == ["setosa", "versicolor", "virginica"]
    assert [row["id"] for row in predictions.rows()] == [0, 1]


def test_a_csv_regressor_encodes_categories_and_refuses_what_it_never_saw(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generator = np.random.default_rng(0)
    rows = [[float(x), colour, 2 * x + {"red": 1.0, "blue": -1.0, "green": 0.0}[colour]]
            for x, colour in zip(generator.normal(size=90), generator.choice(["red", "blue", "green"], 90))]
    table = write_csv(tmp_path / "table.csv", ["x", "colour", "y"], rows)
    options = [f"--data.init_args.path={table}", "--data.init_args.categorical=[colour]", "--trainer.max_epochs=3"]
    checkpoint, datamodule = trained(tmp_path / "run", CONFIGS / "examples" / "csv_regression.yaml", *options)
    new = [{"colour": "blue", "x": 0.5, "other": "z"}, {"x": "-1.25", "colour": "red"}]
    encoded = torch.tensor([[0.5, 1.0, 0.0, 0.0], [-1.25, 0.0, 0.0, 1.0]])  # x, then colour one-hot: blue, green, red
    expected = load_module(checkpoint)(datamodule.standardize_inputs(encoded)).detach().numpy()
    gone(table)

    predictor = load(checkpoint)
    predictions = predictor.predict(new)

    assert predictor.spec["categorical"] == {"colour": ["blue", "green", "red"]}
    np.testing.assert_allclose(predictions.outputs, expected, atol=1e-6)
    assert [list(row) for row in predictions.rows()] == [["id", "y"]] * 2
    for bad, words in [({"x": 1.0, "colour": "purple"}, "'purple' is not a level seen in training (blue, green, red)"),
                       ({"x": "one", "colour": "red"}, "column 'x': 'one' is not a number"),
                       ({"colour": "red"}, "no column 'x'")]:
        with pytest.raises(PredictionInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            predictor.predict([bad])


def image_reference(checkpoint: Path, datamodule, images: torch.Tensor) -> np.ndarray:
    return load_module(checkpoint)(datamodule.to_inputs(images)).softmax(-1).detach().numpy()


def test_images_from_files_a_folder_pil_and_arrays_match_the_training_preprocessing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from PIL import Image

    root = write_folder(tmp_path / "images", per_class=10)
    options = [f"--data.init_args.root={root}", "--data.init_args.batch_size=16", "--trainer.max_epochs=1"]
    checkpoint, datamodule = trained(tmp_path / "run", CONFIGS / "examples" / "image_folder.yaml", *options)
    new = tmp_path / "new"
    new.mkdir()
    files = [shutil.copy(path, new / f"{i}-{Path(path).name}") for i, path in enumerate(sorted(root.glob("*/00[0-1].png")))]
    big = Image.open(files[0]).resize((56, 56))  # another size: resized as in training
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(path))) for path in files])
    expected = image_reference(checkpoint, datamodule, pixels)
    gone(root)
    predictor = load(checkpoint)

    from_folder = predictor.predict(new)
    assert from_folder.ids == [str(path) for path in sorted(new.glob("*.png"))] == [str(path) for path in files]
    np.testing.assert_allclose(from_folder.outputs, expected, atol=1e-6)
    np.testing.assert_allclose(predictor.predict(str(new / "*.png")).outputs, expected, atol=1e-6)
    np.testing.assert_allclose(predictor.predict(pixels.numpy()).outputs, expected, atol=1e-6)
    np.testing.assert_allclose(predictor.predict([Image.open(files[1])]).outputs, expected[1:2], atol=1e-6)
    from torchvision.transforms.v2 import functional as TF

    big_reference = image_reference(checkpoint, datamodule, TF.resize(torch.from_numpy(np.array(big))[None], [28, 28], antialias=True))
    np.testing.assert_allclose(predictor.predict(big).outputs, big_reference, atol=1e-6)
    (new / "broken.png").write_text("not an image")
    with pytest.raises(PredictionInputError, match="broken.png: not an image that decodes"):
        predictor.predict(new)


def test_fashion_mnist_checkpoint_predicts_uint8_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_idx(tmp_path / "data", train=64, test=16)
    options = [f"--data.data_dir={data}", "--data.val_size=16", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"]
    checkpoint, datamodule = trained(tmp_path / "run", CONFIGS / "fashion_cnn.yaml", *options)
    images = datamodule.splits["test"][0][:5]
    expected = image_reference(checkpoint, datamodule, images)
    gone(data)

    predictions = load(checkpoint).predict(images.numpy())

    np.testing.assert_allclose(predictions.outputs, expected, atol=1e-6)
    assert predictions.columns[0] == "T-shirt/top" and len(predictions.columns) == 10


def test_autoencoder_gives_codes_and_reconstructions_in_centimetres(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint, datamodule = trained(tmp_path / "run", CONFIGS / "iris_autoencoder.yaml", "--trainer.max_epochs=1")
    raw = torch.tensor([[5.9, 3.0, 4.2, 1.5]])
    module = load_module(checkpoint)
    inputs = datamodule.standardize_inputs(raw)

    predictions = load(checkpoint).predict(raw.numpy())

    np.testing.assert_allclose(predictions.outputs, module(inputs).detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(predictions.codes, module.encode(inputs).detach().numpy(), atol=1e-6)
    row = predictions.rows()[0]
    assert list(row) == ["id", "sepal_length", "sepal_width", "petal_length", "petal_width", "code_0", "code_1"]


@pytest.mark.parametrize(("config", "raw", "features"), [
    ("polynomial_regression.yaml", [[0.5], [-1.0]], lambda x: torch.cat([x**p for p in range(1, 5)], 1)),
    ("xor_logistic_regression_quadrant.yaml", [[2.0, 3.0], [-1.0, 2.0]],
     lambda p: torch.stack([(p[:, 0] > 0) & (p[:, 1] > 0), (p[:, 0] < 0) & (p[:, 1] > 0),
                            (p[:, 0] < 0) & (p[:, 1] < 0), (p[:, 0] > 0) & (p[:, 1] < 0)], 1).float()),
])
def test_synthetic_experiments_take_the_raw_points(tmp_path, monkeypatch, config, raw, features):
    """The datamodule's feature map (powers of x, quadrant one-hot) is applied from the checkpoint's name for it."""
    monkeypatch.chdir(tmp_path)
    checkpoint, datamodule = trained(tmp_path / "run", CONFIGS / config, "--trainer.max_steps=3")
    points = torch.tensor(raw)
    output = load_module(checkpoint)(datamodule.standardize_inputs(features(points)))
    expected = output.softmax(-1) if config.startswith("xor") else output

    np.testing.assert_allclose(load(checkpoint).predict(points.numpy()).outputs, expected.detach().numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """The default iris experiment, trained once for the tests below (2 epochs, panels and logger on)."""
    folder = tmp_path_factory.mktemp("iris")
    here = Path.cwd()
    import os

    os.chdir(folder)
    try:
        yield run(CONFIGS / "iris_mlp_classifier.yaml", "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false")
    finally:
        os.chdir(here)


def test_a_run_folder_predicts_with_the_checkpoint_its_test_metrics_came_from(tmp_path, iris_run):
    from_folder = load(iris_run.folder)
    assert from_folder.checkpoint == Path(iris_run.checkpoints["best"])
    moved = shutil.copytree(iris_run.folder, tmp_path / "moved")  # metrics.json's absolute paths point to the original
    assert load(moved).checkpoint == moved / "checkpoints" / Path(iris_run.checkpoints["best"]).name  # its own copy
    with pytest.raises(CheckpointError, match="a folder, not a checkpoint file"):
        load(tmp_path)


def test_a_checkpoint_without_its_inputs_says_how_to_predict_anyway(tmp_path, iris_run):
    checkpoint = Path(iris_run.checkpoints["best"])
    old = torch.load(checkpoint, weights_only=True)
    del old["IrisDataModule"]  # as written before checkpoints knew their inputs
    torch.save(old, tmp_path / "old.ckpt")

    with pytest.raises(CheckpointError, match="does not record its inputs.*load_module") as error:
        load(tmp_path / "old.ckpt")
    assert "\n" not in str(error.value)


def predict_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_script(ROOT / "scripts" / "predict.py", *args, cwd=cwd)


@pytest.mark.slow
def test_predict_script_as_a_process_prints_its_help():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--out" in done.stdout and "INPUT" in done.stdout


def test_predict_script_writes_one_row_per_input_and_refuses_bad_input_in_one_line(tmp_path, monkeypatch, iris_run):
    monkeypatch.chdir(tmp_path)
    checkpoint = Path(iris_run.checkpoints["best"])
    from sklearn.datasets import load_iris

    measurements = load_iris().data[:7].astype(np.float32)
    names = ["petal_width", "sepal_length", "sepal_width", "petal_length"]  # another order than training's
    write_csv(tmp_path / "new.csv", names, [[row[3], row[0], row[1], row[2]] for row in measurements.tolist()])
    np.save(tmp_path / "new.npy", measurements)
    expected = load(checkpoint).predict(measurements)

    done = predict_script(str(checkpoint), "new.csv", "--out", "out/predictions.csv", "--batch-size", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "out" / "predictions.csv") as handle:
        written = list(csv.DictReader(handle))
    assert [row["id"] for row in written] == [str(i) for i in range(7)]
    assert [row["predicted"] for row in written] == expected.labels
    np.testing.assert_allclose([[float(row[f"p({name})"]) for name in expected.class_names] for row in written],
                               expected.outputs, atol=1e-6)
    from_array = predict_script(str(checkpoint), "new.npy", cwd=tmp_path)
    assert from_array.returncode == 0, from_array.stderr
    printed = list(csv.DictReader(from_array.stdout.splitlines()))
    assert [row["predicted"] for row in printed] == expected.labels
    np.testing.assert_allclose([float(row["probability"]) for row in printed], expected.probability, atol=1e-6)

    write_csv(tmp_path / "bad.csv", names, [[1, 2, 3, 4], [1, "n/a", 3, 4]])
    bad = predict_script(str(checkpoint), "bad.csv", "--out", "bad-out.csv", cwd=tmp_path)
    assert bad.returncode == 2  # the file it used (standard error, as the CSV may be on standard output), then the error
    assert bad.stderr.splitlines() == [f"checkpoint: {checkpoint}", "error: bad.csv, line 3, column 'sepal_length': 'n/a' is not a number."]
    assert not list(tmp_path.glob("bad-out.csv*"))  # nothing half-written
    absent = predict_script(str(checkpoint), "absent.npy", cwd=tmp_path)
    assert absent.returncode == 2
    assert absent.stderr.splitlines()[-1] == "error: absent.npy: no such file; expected a .npy array of the columns."
    (tmp_path / "damaged.ckpt").write_bytes(checkpoint.read_bytes()[:2000])
    damaged = predict_script("damaged.ckpt", "new.csv", cwd=tmp_path)
    assert damaged.returncode == 2 and len(damaged.stderr.strip().splitlines()) == 1 and "damaged.ckpt: truncated" in damaged.stderr


def test_predictions_csv_of_train_predict_shows_the_inputs(tmp_path, monkeypatch, iris_run):
    monkeypatch.chdir(tmp_path)
    from sklearn.datasets import load_iris

    from lightning_models.training.run import evaluate

    result = iris_run
    evaluate("predict", CONFIGS / "iris_mlp_classifier.yaml", f"--ckpt_path={result.checkpoints['best']}",
             "--trainer.enable_progress_bar=false")
    with open(result.folder / "predictions-test.csv") as handle:
        rows = list(csv.DictReader(handle))
    test_rows = load_iris().data[::2]  # the odd_even partition: even rows test
    assert len(rows) == len(test_rows) == 75
    np.testing.assert_allclose([[float(row[name]) for name in ("sepal_length", "sepal_width", "petal_length", "petal_width")]
                                for row in rows], test_rows, atol=1e-5)
