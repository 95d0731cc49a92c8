"""scripts/export.py: every format of every task kind answers as the checkpoint on raw inputs; numpy refuses the nets
it cannot express; an export folder is never half-written or another model's silently replaced."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_models import ClassificationModule, RegressionModule, load, run
from lightning_models.inference import export as export_module
from lightning_models.inference import numpy_forward
from lightning_models.inference.export import ExportError, load_export, numpy_layers
from lightning_models.inference.predictor import PredictionNet
from lightning_models.nets import MLP
from tests.conftest import CONFIGS, ROOT
from tests.helpers import run_script, write_idx

EXPORT = ROOT / "scripts" / "export.py"
SLOW = pytest.mark.slow
MEASUREMENTS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
QUICK = ("--trainer.max_epochs=2", "--trainer.enable_progress_bar=false")
RUNS = {  # task kind: the config and its options
    "classifier": (CONFIGS / "iris_mlp_classifier.yaml",),
    "regressor": (CONFIGS / "iris_mlp_regressor.yaml",),
    "autoencoder": (CONFIGS / "iris_autoencoder.yaml",),
    "residual": (CONFIGS / "iris_mlp_classifier.yaml", "--model.init_args.net",
                 '{"class_path": "residual_pkg.nets.ResidualNet", "init_args": {"width": 16}}'),
    "fashion": (CONFIGS / "fashion_cnn.yaml", "--data.data_dir=tiny", "--data.val_size=16", "--data.batch_size=16",
                "--data.download=false", "--trainer.precision=32-true", "--trainer.max_epochs=1"),
}


def residual_net_source() -> str:
    """docs/extending.md's ResidualNet, as the user copies it."""
    text = (ROOT / "docs" / "extending.md").read_text()
    return re.search(r"```python\n# my_pkg/nets.py\n(.*?)```", text, re.S).group(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """``checkpoint(kind)``: the last checkpoint of a short run of that kind, trained once per module on first use."""
    folder = tmp_path_factory.mktemp("runs")
    package = folder / "residual_pkg"  # docs/extending.md's my_pkg under a name no other test module imports
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(residual_net_source())
    write_idx(folder / "tiny")
    sys.path.insert(0, str(folder))  # the user's package, for training and for load(checkpoint)
    trained: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in trained:
            here = os.getcwd()
            os.chdir(folder)
            try:
                trained[kind] = Path(run(*RUNS[kind], *QUICK).checkpoints["last"])
            finally:
                os.chdir(here)
        return trained[kind]

    yield get
    sys.path.remove(str(folder))
    for name in [name for name in sys.modules if name == "residual_pkg" or name.startswith("residual_pkg.")]:
        del sys.modules[name]


def iris_rows() -> list[dict[str, object]]:
    """All 150 iris rows as dicts by column name, with an extra column the models must ignore."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    return [{**dict(zip(MEASUREMENTS, map(float, row))), "species": str(iris.target_names[label])}
            for row, label in zip(iris.data, iris.target)]


def raw_inputs(kind: str) -> object:
    if kind == "fashion":
        return torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)).numpy()
    return iris_rows()


def export(checkpoint: Path, format: str, out: Path, *options: str) -> subprocess.CompletedProcess:
    return run_script(EXPORT, str(checkpoint), "--format", format, "--out", str(out), *options, cwd=out.parent)


def max_difference(got: np.ndarray, expected: np.ndarray) -> float:
    assert got.shape == expected.shape
    return float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())


FAST = {("classifier", "onnx"), ("classifier", "torch-export"), ("classifier", "numpy"), ("autoencoder", "numpy"),
        ("residual", "torch-export")}  # the fast tier: every format once, codes, a net of the user's; the rest is slow
PARITY = [(kind, format) for kind in ("classifier", "regressor", "autoencoder", "residual") for format in ("onnx", "torch-export")]
PARITY += [(kind, "numpy") for kind in ("classifier", "regressor", "autoencoder")] + [("fashion", "onnx"), ("fashion", "torch-export")]
PARITY = [pytest.param(kind, format, marks=() if (kind, format) in FAST else SLOW) for kind, format in PARITY]


@pytest.mark.parametrize(("kind", "format"), PARITY)
def test_export_answers_as_the_checkpoint_on_raw_inputs(kind: str, format: str, checkpoint, tmp_path: Path) -> None:
    path, out = checkpoint(kind), tmp_path / "export"
    done = export(path, format, out)
    assert done.returncode == 0, done.stderr
    files = {"onnx": ["model.onnx"], "torch-export": ["model.pt2"], "numpy": ["model.npz", "numpy_forward.py"]}[format]
    files += ["encoder.npz"] if format == "numpy" and kind == "autoencoder" else []
    assert sorted(os.listdir(out)) == sorted([*files, "model.json"])
    inputs = raw_inputs(kind)
    expected, got = load(path).predict(inputs), load_export(out).predict(inputs)
    assert max_difference(got.outputs, expected.outputs) <= 1e-5
    assert (got.ids, got.columns, got.class_names) == (expected.ids, expected.columns, expected.class_names)
    if kind == "autoencoder":  # the code, from the encoder file
        assert expected.codes.shape[1] == 2 and max_difference(got.codes, expected.codes) <= 1e-5
    else:
        assert got.codes is None
    if kind in ("classifier", "residual", "fashion"):  # probabilities, as the checkpoint's predictor gives them
        np.testing.assert_allclose(got.outputs.sum(axis=1), 1, atol=1e-5)
        assert got.labels == expected.labels
    one = load_export(out).predict(inputs[:1])  # a batch of one: the batch axis is free
    assert max_difference(one.outputs, expected.outputs[:1]) <= 1e-5
    description = json.loads((out / "model.json").read_text())
    assert description["format"] == format and description["spec"] == load(path).spec
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no staging folder left beside it
    if format != "numpy":  # the file alone, as a program without the template runs it: named outputs, in order
        batch = next(load(path).batches(inputs[:7]))[1]
        answers = graph_answers(out / files[0], batch)
        assert list(description["files"]) == ["outputs", "codes"][: len(answers)]
        assert max_difference(answers[0], expected.outputs[:7]) <= 1e-5
        assert kind != "autoencoder" or max_difference(answers[1], expected.codes[:7]) <= 1e-5


def graph_answers(path: Path, batch: torch.Tensor) -> list[np.ndarray]:
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [output.name for output in session.get_outputs()][0] == "outputs"
        return session.run(None, {"inputs": batch.numpy()})
    with torch.no_grad():
        return [answer.numpy() for answer in torch.export.load(str(path)).module()(batch)]


def test_numpy_export_runs_with_numpy_alone(checkpoint, tmp_path: Path) -> None:
    """The copied numpy_forward.py, in an interpreter where torch cannot be imported, on raw columns."""
    out = tmp_path / "export"
    assert export(checkpoint("classifier"), "numpy", out).returncode == 0
    rows = iris_rows()[::10]
    columns = json.loads((out / "model.json").read_text())["input"]["columns"]
    assert columns == MEASUREMENTS
    x = [[row[name] for name in columns] for row in rows]
    script = ("import sys, json; sys.modules['torch'] = None; sys.path.insert(0, sys.argv[1]); "
              "from numpy_forward import load, forward; "
              "print(json.dumps(forward(load(sys.argv[1] + '/model.npz'), json.loads(sys.argv[2])).tolist()))")
    done = subprocess.run([sys.executable, "-c", script, str(out), json.dumps(x)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = load(checkpoint("classifier")).predict(rows).outputs
    assert max_difference(np.array(json.loads(done.stdout)), expected) <= 1e-5


@pytest.mark.parametrize("kind", ["residual", pytest.param("fashion", marks=SLOW)])
def test_numpy_refuses_a_net_it_cannot_express(kind: str, checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "export"
    done = export(checkpoint(kind), "numpy", out)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    net = {"residual": "residual_pkg.nets.ResidualNet", "fashion": "lightning_models.nets.FashionCNN"}[kind]
    assert net in lines[0] and "--format onnx" in lines[0] and "--format torch-export" in lines[0]
    assert os.listdir(tmp_path) == []  # no file, no staging folder


def test_numpy_layers_follow_the_transforms_and_output_activations() -> None:
    """The feature maps, categorical one-hot columns, leaky ReLU and mse_onehot's squashing, against PredictionNet."""
    net = functools.partial(MLP, hidden_sizes=[5], activation="leaky_relu", negative_slope=0.2)
    generator = torch.Generator().manual_seed(0)
    cases = [  # (spec, module, raw input width)
        ({"transform": "quadrant_one_hot", "mean": [0.5, 0.2, 0.1, 0.3], "std": [0.5, 0.4, 0.3, 0.5], "class_names": ["a", "b"]},
         ClassificationModule(4, 2, net=net), 2),
        ({"transform": "powers_1_to_4", "mean": [0.1, 0.9, 0.2, 2.5], "std": [1.0, 1.3, 2.1, 4.0], "class_names": None},
         RegressionModule(4, 1, net=net), 1),
        ({"transform": None, "mean": None, "std": None, "class_names": ["a", "b", "c"]},
         ClassificationModule(5, 3, net=net, loss="mse_onehot", output_activation="sigmoid_softmax"), 5),
    ]
    for spec, module, width in cases:
        spec = {"kind": "table", "features": [f"x{i}" for i in range(width)], "categorical": {}, **spec}
        prediction_net = PredictionNet(module.eval(), spec)
        x = torch.randn(50, width, generator=generator)
        layers = numpy_layers(prediction_net, Path("test.ckpt"))
        with torch.no_grad():
            expected = prediction_net(x).numpy()
        assert max_difference(numpy_forward.forward([(kind, tuple(arrays)) for kind, arrays in layers], x.numpy()), expected) <= 1e-5
        first = {"quadrant_one_hot": "QuadrantOneHot", "powers_1_to_4": "Powers", None: "linear"}[spec["transform"]]
        assert [kind for kind, _ in layers][0] == first  # a checkpoint's old "transform" name, as nets' feature map


def test_export_that_answers_differently_is_not_written(checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check against the checkpoint: a numpy writer that lost the standardisation leaves nothing behind."""
    lossy = export_module.numpy_layers
    monkeypatch.setattr(export_module, "numpy_layers",
                        lambda net, path: [layer for layer in lossy(net, path) if layer[0] != "standardize"])
    with pytest.raises(ExportError, match="answers differently from the checkpoint"):
        export_module.export(checkpoint("classifier"), tmp_path / "export", "numpy")
    assert os.listdir(tmp_path) == []


def test_an_export_folder_is_replaced_only_by_the_same_model_or_with_force(checkpoint, tmp_path: Path) -> None:
    classifier, regressor, out = checkpoint("classifier"), checkpoint("regressor"), tmp_path / "export"
    assert export(classifier, "torch-export", out).returncode == 0
    assert export(classifier, "numpy", out).returncode == 0  # the same model again: replaced
    assert sorted(os.listdir(out)) == ["model.json", "model.npz", "numpy_forward.py"]
    refused = export(regressor, "torch-export", out)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1 and "--force" in refused.stderr
    assert json.loads((out / "model.json").read_text())["checkpoint"] == str(classifier.resolve())
    assert export(regressor, "torch-export", out, "--force").returncode == 0
    assert json.loads((out / "model.json").read_text())["checkpoint"] == str(regressor.resolve())
    assert sorted(os.listdir(out)) == ["model.json", "model.pt2"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    refused = export(classifier, "onnx", notes, "--force")  # not an export: never replaced
    assert refused.returncode == 2 and "not an export" in refused.stderr
    assert os.listdir(notes) == ["todo.txt"]
    assert sorted(os.listdir(tmp_path)) == ["export", "notes"]


def test_a_checkpoint_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    done = export(tmp_path / "missing.ckpt", "onnx", tmp_path / "export")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'missing.ckpt'}: no such checkpoint file")
    assert os.listdir(tmp_path) == []
