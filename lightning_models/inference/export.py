"""``PredictionNet`` as ONNX, torch.export or numpy layers beside ``model.json``, checked against the checkpoint first."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import lightning_models.inference.numpy_forward as numpy_forward
from lightning_models.autoencoder import AutoencoderModule
from lightning_models.callbacks.predictions import PredictionOutputError
from lightning_models.checks import ConfigError
from lightning_models.classification import ClassificationModule, answer_activation
from lightning_models.inference.prediction_inputs import column_names
from lightning_models.inference.predictor import PredictionNet, Predictor, load
from lightning_models.nets import MLP, AutoEncoder
from lightning_models.regression import RegressionModule

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2", "numpy": ".npz"}
NUMPY_ACTIVATIONS = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
CHECK_ROWS = 64


class ExportError(ConfigError):
    """A model a format cannot express, a destination that is not ours to replace, an export that failed its check."""


def export(checkpoint: str | Path, out: str | Path, format: str, force: bool = False) -> dict[str, Any]:
    """Export ``checkpoint`` in ``format`` into the folder ``out`` (another checkpoint's export there only with ``force``)."""
    if format not in FORMATS:
        raise ExportError(f"--format {format!r}: expected one of {', '.join(FORMATS)}.")
    predictor, out = load(checkpoint), Path(out)
    checkpoint = predictor.checkpoint.resolve()
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        try:
            previous = json.loads((out / "model.json").read_text())["checkpoint"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ExportError(f"--out {out}: not an export (no model.json); pass a new or empty folder.") from None
        if previous != str(checkpoint) and not force:
            raise ExportError(f"--out {out}: the export of another checkpoint ({previous}); pass --force to replace it.")
    nets = {"outputs": predictor.net, **({"codes": predictor.encoder} if predictor.encoder is not None else {})}
    layers = {name: numpy_layers(net, checkpoint) for name, net in nets.items()} if format == "numpy" else {}
    example = random_inputs(predictor.spec, CHECK_ROWS)
    try:
        expected = predictor.answer(list(range(CHECK_ROWS)), example)
    except PredictionOutputError:
        raise ExportError(f"{checkpoint}: the model answers NaN or infinity on random inputs at its training data's scale; "
                          "nothing was exported.") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        files = {name: ("encoder" if name == "codes" and layers else "model") + FORMATS[format] for name in nets}
        for name, layer_list in layers.items():
            np.savez(staging / files[name], kinds=np.array([kind for kind, _ in layer_list]),
                     **{f"layer{i}_{k}": array for i, (_, arrays) in enumerate(layer_list) for k, array in enumerate(arrays)})
        if layers:
            shutil.copyfile(numpy_forward.__file__, staging / "numpy_forward.py")
        else:
            write_graph(format, Answers(nets).eval(), example, staging / files["outputs"])
        spec = predictor.spec
        description = {"format": format, "files": files, "checkpoint": str(checkpoint),
                       "input": {"name": "inputs", "dtype": str(example.dtype).removeprefix("torch."),
                                 "shape": ["batch", *example.shape[1:]], "columns": None if predictor.image else column_names(spec)},
                       "columns": expected.columns, "spec": spec}
        exported = ExportedModel(staging, description)
        with torch.inference_mode():
            pairs = [(net(example), b) for net, b in [(exported.net, expected.outputs), (exported.encoder, expected.codes)] if net]
        difference = max(float(np.abs(a.numpy().astype(np.float64) - b).max()) for a, b in pairs)
        if not difference <= 1e-4 * max(1.0, *(float(np.abs(b).max()) for _, b in pairs)):  # not: a NaN fails too
            raise ExportError(f"the {format} export answers differently from the checkpoint on random inputs (max abs "
                              f"difference {difference:.3g}); nothing was written.")
        description["checked"] = {"random_inputs": CHECK_ROWS, "max_abs_difference": difference}
        (staging / "model.json").write_text(json.dumps(description, indent=2) + "\n")
        old = out.parent / f".{out.name}.old-{os.getpid()}"  # an old export goes only once the new one is in place
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return description


def random_inputs(spec: dict[str, Any], rows: int, seed: int = 0) -> torch.Tensor:
    """Encoded raw inputs near the training data's scale: uint8 images, or rows with one level per categorical column."""
    generator = torch.Generator().manual_seed(seed)
    if spec["kind"] == "image":
        return torch.randint(0, 256, (rows, *spec["image_shape"]), dtype=torch.uint8, generator=generator)
    values = torch.randn(rows, len(column_names(spec)), generator=generator)
    if not (spec.get("feature_map") or spec.get("transform")) and spec.get("mean") is not None:
        values = torch.tensor(spec["mean"]) + torch.tensor(spec["std"]) * values
    start = 0
    for name in spec["features"]:
        if levels := spec["categorical"].get(name, []):
            chosen = torch.randint(0, len(levels), (rows,), generator=generator)
            values[:, start : start + len(levels)] = nn.functional.one_hot(chosen, len(levels)).float()
        start += len(levels) or 1
    return values.float()


class Answers(nn.Module):
    """The prediction nets as one graph: ``(outputs,)`` or ``(outputs, codes)``."""

    def __init__(self, nets: dict[str, PredictionNet]) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(nets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(net(x) for net in self.nets.values())


def write_graph(format: str, net: Answers, example: torch.Tensor, path: Path) -> None:
    batch = {0: torch.export.Dim("batch")}
    try:
        if format == "torch-export":
            return torch.export.save(torch.export.export(net, (example,), dynamic_shapes=(batch,)), str(path))
        with contextlib.redirect_stdout(io.StringIO()):  # the ONNX exporter's progress lines
            torch.onnx.export(net, (example,), str(path), dynamo=True, dynamic_shapes=(batch,), input_names=["inputs"],
                              output_names=list(net.nets), external_data=False)
    except Exception as error:  # noqa: BLE001 - the exporters raise many kinds; the user needs the first line and a way out
        others = " or ".join(f"--format {other}" for other in FORMATS if other != format)
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ExportError(f"the {format} exporter failed on {type(net.nets.outputs.module.net).__qualname__} "
                          f"({type(error).__name__}: {reason}); try {others}.") from None


def numpy_layers(net: PredictionNet, checkpoint: Path) -> list[tuple[str, list[np.ndarray]]]:
    """``net`` as ``numpy_forward``'s layers, only where its forward is known to be them (our modules, ``MLP``/``AutoEncoder``)."""
    module, preprocess, inner = net.module, net.preprocess, getattr(net.module, "net", None)
    refusal = ExportError(f"{checkpoint}: the numpy format takes MLP and AutoEncoder nets on tables, not "
                          f"{type(inner).__module__}.{type(inner).__qualname__}; use --format onnx or --format torch-export.")
    feature_map, kind = type(preprocess.feature_map).__name__, type(module)
    if kind is AutoencoderModule and type(inner) is AutoEncoder:
        sequences = [inner.encoder] if net.code else [inner.encoder, inner.decoder]
    else:
        sequences = [inner] if kind in (ClassificationModule, RegressionModule) and not net.code else []
    if preprocess.image or feature_map not in ("Identity", *numpy_forward.FEATURE_MAPS) or not sequences or any(
            type(sequence) is not MLP for sequence in sequences):
        raise refusal
    layers = [] if feature_map == "Identity" else [(feature_map, [np.array(getattr(preprocess.feature_map, "degree", 0))])]
    if preprocess.mean is not None:
        layers.append(("standardize", [preprocess.mean.flatten().numpy(), preprocess.std.flatten().numpy()]))
    for layer in (layer for sequence in sequences for layer in sequence):
        if type(layer) is nn.Linear:
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
            layers.append(("linear", [layer.weight.detach().cpu().numpy(), bias.detach().cpu().numpy()]))
        elif type(layer) in NUMPY_ACTIVATIONS:
            layers.append((NUMPY_ACTIVATIONS[type(layer)], [np.array(layer.negative_slope)] if type(layer) is nn.LeakyReLU else []))
        else:
            raise refusal
    if kind is RegressionModule:  # the net answers in standardised target units; the module scales back
        layers.append(("linear", [np.diag(module.target_std.cpu().numpy()), module.target_mean.cpu().numpy()]))
    if kind is ClassificationModule:  # as its predict_step
        layers += [(name, []) for name in answer_activation(module.hparams).split("_") if name != "identity"]
    return layers


def load_export(folder: str | Path) -> ExportedModel:
    """The export in ``folder``, a ``Predictor`` on the raw inputs ``load(checkpoint)`` takes."""
    try:
        description = json.loads((Path(folder) / "model.json").read_text())
        FORMATS[description["format"]]  # noqa: B018 - a KeyError for a format this version does not know
        return ExportedModel(Path(folder), description)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ExportError(f"{folder}: not an export of scripts/export.py ({type(error).__name__}: {error}).") from None


class ExportedModel(Predictor):
    """A ``Predictor`` whose nets are the exported files."""

    def __init__(self, folder: Path, description: dict[str, Any]) -> None:  # what batches() and answer() use; no module
        self.spec, self.format, self.columns = description["spec"], description["format"], description["columns"]
        self.image, self.class_names, self.device = self.spec["kind"] == "image", self.spec.get("class_names"), "cpu"
        runs = {file: self.runner(folder / file) for file in set(description["files"].values())}
        nets = [functools.partial(lambda run, i, batch: run(batch)[i], runs[file], 0 if self.format == "numpy" else i)
                for i, file in enumerate(description["files"].values())]  # a graph gives (outputs, codes)
        self.net, self.encoder = nets[0], nets[1] if len(nets) > 1 else None

    def runner(self, path: Path) -> Any:
        if self.format == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            return lambda batch: [torch.from_numpy(answer) for answer in session.run(None, {"inputs": batch.contiguous().numpy()})]
        if self.format == "torch-export":
            return torch.export.load(str(path)).module()
        layers = numpy_forward.load(str(path))
        return lambda batch: [torch.from_numpy(numpy_forward.forward(layers, batch.numpy()).astype(np.float32))]
