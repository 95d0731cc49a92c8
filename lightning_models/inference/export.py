"""A trained model as a file other programs run: ONNX, torch.export's ``.pt2``, or numpy weights, with ``model.json``.

    python scripts/export.py lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt --format onnx --out export
    from lightning_models.inference.export import load_export
    load_export("export").predict([{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5}])

What is exported is ``predictor.PredictionNet``, preprocessing included: raw numbers in (a table's columns in
``model.json``'s ``input.columns`` order, categorical ones one-hot; uint8 images ``(N, C, H, W)``), any batch size;
the answer out: ``outputs`` (class probabilities, values, reconstructions) and, for an autoencoder, ``codes``. ONNX and
``.pt2``: one graph, ``model.onnx``/``model.pt2``, with those outputs in that order; numpy: ``model.npz`` and
``encoder.npz``, with ``numpy_forward.py`` to run them. ``model.json`` holds the checkpoint's ``prediction_inputs``
(feature names, levels, class names, image shape), the output columns and which file gives which answer. The numpy
format takes only the nets it can express exactly (``nets.MLP``, ``nets.AutoEncoder`` on tables) and refuses the
rest. Every export is compared with the checkpoint on random raw inputs in a staging folder and put in place only
when it answers alike.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import lightning_models.inference.numpy_forward as numpy_forward
from lightning_models.autoencoder import AutoencoderModule
from lightning_models.checks import ConfigError
from lightning_models.classification import ClassificationModule
from lightning_models.inference.predictor import PredictionNet, PredictionOutputError, Predictions, Predictor, Preprocess, load
from lightning_models.nets import MLP, AutoEncoder
from lightning_models.regression import RegressionModule

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2", "numpy": ".npz"}
STEMS = {"outputs": "model", "codes": "encoder"}  # the numpy file of each answer (Predictions.outputs, .codes)
CHECK_ROWS = 64
NUMPY_ACTIVATIONS = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
CLASSIFIER_OUTPUTS = {"identity": [], "sigmoid": ["sigmoid"], "softmax": ["softmax"], "sigmoid_softmax": ["sigmoid", "softmax"]}


class ExportError(ConfigError):
    """A model a format cannot express, a destination that is not ours to replace, an export that failed its check."""


def export(checkpoint: str | Path, out: str | Path, format: str, force: bool = False) -> dict[str, Any]:
    """Write the export of ``checkpoint`` in ``format`` to the folder ``out``; returns ``model.json``'s content.

    ``out`` may be new, empty, or an earlier export of the same checkpoint; another checkpoint's export is replaced
    only with ``force``, and a folder that is not an export never. Nothing is left half-written."""
    if format not in FORMATS:
        raise ExportError(f"--format {format!r}: expected one of {', '.join(FORMATS)}.")
    predictor, out = load(checkpoint), Path(out)  # a bad checkpoint is the first thing to say, before anything about --out
    checkpoint = predictor.checkpoint  # a run folder's: its best
    check_destination(out, checkpoint.resolve(), force)
    nets = {"outputs": predictor.net, **({"codes": predictor.encoder} if predictor.encoder is not None else {})}
    if format == "numpy":  # refused before anything is written
        layers = {name: numpy_layers(net, checkpoint) for name, net in nets.items()}
    example = random_inputs(predictor.spec, CHECK_ROWS)
    try:
        expected = predictor.answer(list(range(CHECK_ROWS)), example)
    except PredictionOutputError:
        raise ExportError(f"{checkpoint}: the model answers NaN or infinity on random inputs at its training data's scale "
                          "(are its weights finite?); nothing was exported.") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        if format == "numpy":  # numpy_forward runs one layer list per file
            files = {name: STEMS[name] + FORMATS[format] for name in nets}
            for name in nets:
                write_numpy(layers[name], staging / files[name])
            shutil.copyfile(numpy_forward.__file__, staging / "numpy_forward.py")
        else:  # one graph whose outputs are named, and ordered, as ``files``
            files = dict.fromkeys(nets, "model" + FORMATS[format])
            write_graph(format, Answers(nets).eval(), example, staging / files["outputs"])
        description = {"format": format, "files": files, "checkpoint": str(checkpoint.resolve()),
                       "input": {"name": "inputs", "dtype": str(example.dtype).removeprefix("torch."),
                                 "shape": ["batch", *example.shape[1:]], "columns": input_columns(predictor.spec)},
                       "columns": expected.columns, "spec": predictor.spec}
        write_json(staging, description)
        description["checked"] = check(load_export(staging), expected, example, format)
        write_json(staging, description)
        put_in_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return description


def check_destination(out: Path, checkpoint: Path, force: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise ExportError(f"--out {out}: a file is there; pass a folder (new, empty or an earlier export).")
    try:
        previous = json.loads((out / "model.json").read_text())["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ExportError(f"--out {out}: a non-empty folder that is not an export (no model.json from scripts/export.py); "
                          "pass a new or empty folder.") from None
    if previous != str(checkpoint) and not force:
        raise ExportError(f"--out {out}: holds the export of another checkpoint ({previous}); pass --force to replace it, "
                          "or another --out.")


def put_in_place(staging: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; an old export there goes only once the new one is in place."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def write_json(folder: Path, description: dict[str, Any]) -> None:
    (folder / "model.json").write_text(json.dumps(description, indent=2) + "\n")


def input_columns(spec: dict[str, Any]) -> list[str] | None:
    """A table's input columns by name, a categorical column as one ``name=level`` column per level."""
    if spec["kind"] != "table":
        return None
    levels = spec["categorical"]
    return [column for name in spec["features"] for column in ([f"{name}={level}" for level in levels[name]] if name in levels else [name])]


def random_inputs(spec: dict[str, Any], rows: int, seed: int = 0) -> torch.Tensor:
    """Raw inputs as ``Predictor.batches`` encodes them: uint8 images, or table rows near the training data's scale
    (where the standardisation is of the raw columns) with one valid one-hot level per categorical column."""
    generator = torch.Generator().manual_seed(seed)
    if spec["kind"] == "image":
        return torch.randint(0, 256, (rows, *spec["image_shape"]), dtype=torch.uint8, generator=generator)
    columns = input_columns(spec) or []
    values = torch.randn(rows, len(columns), generator=generator)
    if spec.get("transform") is None and spec.get("mean") is not None:
        values = torch.tensor(spec["mean"]) + torch.tensor(spec["std"]) * values
    start = 0
    for name in spec["features"]:
        levels = spec["categorical"].get(name, [])
        if levels:
            chosen = torch.randint(0, len(levels), (rows,), generator=generator)
            values[:, start : start + len(levels)] = nn.functional.one_hot(chosen, len(levels)).float()
        start += len(levels) or 1
    return values.float()


def check(exported: ExportedModel, expected: Predictions, example: torch.Tensor, format: str) -> dict[str, Any]:
    """The export's answers on ``example`` against the checkpoint's; an ``ExportError`` when they differ."""
    try:
        got = exported.answer(expected.ids, example)
    except PredictionOutputError:  # the checkpoint's answers were finite (export() checked them)
        raise ExportError(f"the {format} export answers NaN or infinity where the checkpoint does not; nothing was written.") from None
    pairs = [(got.outputs, expected.outputs)] + ([(got.codes, expected.codes)] if expected.codes is not None else [])
    difference = max(float(np.abs(a.astype(np.float64) - b).max()) for a, b in pairs)
    scale = max(1.0, *(float(np.abs(b).max()) for _, b in pairs))
    if not difference <= 1e-4 * scale:  # not: a NaN fails too
        raise ExportError(f"the {format} export answers differently from the checkpoint on random inputs (max abs "
                          f"difference {difference:.3g}); nothing was written.")
    return {"random_inputs": len(example), "max_abs_difference": difference}


# --- writers ----------------------------------------------------------------------------------------------------

class Answers(nn.Module):
    """The prediction nets side by side, as one graph: ``(outputs,)`` or ``(outputs, codes)``."""

    def __init__(self, nets: dict[str, PredictionNet]) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(nets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(net(x) for net in self.nets.values())


def write_graph(format: str, net: Answers, example: torch.Tensor, path: Path) -> None:
    """``net`` traced by torch.export with a free batch size, saved as ``.pt2`` or converted to ONNX."""
    batch = {0: torch.export.Dim("batch")}
    try:
        if format == "torch-export":
            torch.export.save(torch.export.export(net, (example,), dynamic_shapes=(batch,)), str(path))
            return
        with contextlib.redirect_stdout(io.StringIO()):  # the ONNX exporter's progress lines
            torch.onnx.export(net, (example,), str(path), dynamo=True, dynamic_shapes=(batch,), input_names=["inputs"],
                              output_names=list(net.nets), external_data=False)
    except Exception as error:  # noqa: BLE001 - the exporters raise many kinds; the user needs the first line and a way out
        others = " or ".join(f"--format {other}" for other in FORMATS if other != format)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"the {format} exporter failed on {type(net.nets.outputs.module.net).__qualname__} ({type(error).__name__}: "
                          f"{reason}); try {others}.") from None


def numpy_layers(net: PredictionNet, checkpoint: Path) -> list[tuple[str, list[np.ndarray]]]:
    """``net`` as the layer list of ``numpy_forward``, decided from its classes: only the structures whose forward is
    known to be these layers in this order (the template's own modules with ``MLP``/``AutoEncoder`` on a table)."""
    module, preprocess = net.module, net.preprocess
    inner = getattr(module, "net", None)
    refusal = ExportError(f"{checkpoint}: the numpy format cannot express {type(module).__name__} with net "
                          f"{type(inner).__module__}.{type(inner).__qualname__} (it takes lightning_models.nets.MLP and "
                          "AutoEncoder on tables: Linear layers, relu/leaky_relu/sigmoid/tanh); export it with --format "
                          "onnx or --format torch-export.")
    if type(net) is not PredictionNet or type(preprocess) is not Preprocess or preprocess.image:
        raise refusal
    if type(module) is AutoencoderModule and type(inner) is AutoEncoder:
        sequences = [inner.encoder] if net.code else [inner.encoder, inner.decoder]
    elif type(module) in (ClassificationModule, RegressionModule) and type(inner) is MLP and not net.code:
        sequences = [inner]
    else:
        raise refusal
    layers: list[tuple[str, list[np.ndarray]]] = [(preprocess.transform, [])] if preprocess.transform else []
    if preprocess.mean is not None:
        layers.append(("standardize", [preprocess.mean.flatten().numpy(), preprocess.std.flatten().numpy()]))
    for sequence in sequences:
        if type(sequence) is not MLP:
            raise refusal
        for layer in sequence:
            if type(layer) is nn.Linear:
                bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
                layers.append(("linear", [layer.weight.detach().cpu().numpy(), bias.detach().cpu().numpy()]))
            elif type(layer) in NUMPY_ACTIVATIONS:
                slope = [np.array(layer.negative_slope)] if isinstance(layer, nn.LeakyReLU) else []
                layers.append((NUMPY_ACTIVATIONS[type(layer)], slope))
            else:
                raise refusal
    if type(module) is RegressionModule:  # the net answers in standardised target units; the module scales back
        layers.append(("linear", [np.diag(module.target_std.cpu().numpy()), module.target_mean.cpu().numpy()]))
    if type(module) is ClassificationModule and module.hparams.get("loss") == "mse_onehot":
        layers += [(kind, []) for kind in CLASSIFIER_OUTPUTS[module.hparams.get("output_activation", "softmax")]]
    if net.softmax:
        layers.append(("softmax", []))
    return layers


def write_numpy(layers: list[tuple[str, list[np.ndarray]]], path: Path) -> None:
    arrays = {f"layer{index}_{k}": array for index, (_, values) in enumerate(layers) for k, array in enumerate(values)}
    np.savez(path, kinds=np.array([kind for kind, _ in layers]), **arrays)


# --- the loader -------------------------------------------------------------------------------------------------

def load_export(folder: str | Path) -> ExportedModel:
    """The export in ``folder`` (written by ``scripts/export.py``), ready to ``predict`` on raw inputs."""
    return ExportedModel(folder)


def runner(format: str, path: Path, names: list[str]) -> Callable[[torch.Tensor], dict[str, np.ndarray]]:
    """The file's answers for a raw batch, by name (``outputs``, ``codes``)."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda batch: dict(zip(names, session.run(names, {name: batch.numpy()})))
    if format == "torch-export":
        program = torch.export.load(str(path)).module()

        def run(batch: torch.Tensor) -> dict[str, np.ndarray]:
            with torch.inference_mode():
                return {name: answer.numpy() for name, answer in zip(names, program(batch))}

        return run
    layers = numpy_forward.load(str(path))
    return lambda batch: {names[0]: numpy_forward.forward(layers, batch.numpy()).astype(np.float32)}


class ExportedModel(Predictor):
    """A ``Predictor`` whose net is an exported file: ``predict(inputs)`` takes the raw inputs ``load(checkpoint)``'s
    ``predict`` takes (read and encoded by the same code) and returns the same ``Predictions``.
    ``load_export("export").predict("new_rows.csv").rows()``."""

    def __init__(self, folder: str | Path) -> None:  # Predictor's state that batches() and predict() use, no module
        folder = Path(folder)
        try:
            self.description = json.loads((folder / "model.json").read_text())
            self.spec, self.format = self.description["spec"], self.description["format"]
            files = self.description["files"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ExportError(f"{folder}: not an export written by scripts/export.py ({type(error).__name__}: {error}).") from None
        if self.format not in FORMATS:
            raise ExportError(f"{folder}/model.json: format {self.format!r}; expected one of {', '.join(FORMATS)}.")
        self.folder, self.checkpoint = folder, None
        self.image, self.class_names = self.spec["kind"] == "image", self.spec.get("class_names")
        self.columns = self.description["columns"]
        names: dict[str, list[str]] = {}  # file: the answers it gives, in its outputs' order
        for name, file in files.items():
            names.setdefault(file, []).append(name)
        self.runners = [runner(self.format, folder / file, file_names) for file, file_names in names.items()]

    def answer(self, ids: list[Any], batch: torch.Tensor) -> Predictions:
        batch, answers = batch.cpu().contiguous(), {}
        for run in self.runners:
            answers.update(run(batch))
        return Predictions(ids, answers["outputs"], list(self.columns), self.class_names, answers.get("codes"))
