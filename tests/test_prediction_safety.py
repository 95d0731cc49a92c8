"""Predictions and checkpoints that never answer wrong silently: a NaN or infinite answer is refused naming its row on
every path (``load(...).predict``, ``scripts/predict.py``, an export, the server), never written beside a label; a run
folder predicts with its own checkpoint and every command says which file it used; a checkpoint whose classes do not
import, or an export given as a checkpoint, is one line saying what to do; ``--device cuda`` without CUDA is one line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lightning_models import load, run
from lightning_models.callbacks.predictions import PredictionOutputError
from lightning_models.checks import ConfigError
from lightning_models.inference.export import ExportError, export, load_export
from lightning_models.inference.predictor import Predictor
from lightning_models.training.checkpoints import CheckpointError, load_module
from tests.conftest import CONFIGS, ROOT
from tests.helpers import run_script, write_csv

QUIET = ["--trainer.max_epochs=2", "--trainer.enable_progress_bar=false", "--trainer.precision=32-true",
         "--trainer.callbacks=[]", "--trainer.enable_model_summary=false"]
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
FLOWERS = [{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5},
           {"sepal_length": 6.7, "sepal_width": 3.1, "petal_length": 5.6, "petal_width": 2.4}]
HUGE = 5000.0  # within float32 and the input checks; the Overflow net below answers NaN for it, as an overflowing net would


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-epoch iris classifier and a 1-epoch iris regressor (run folders with metrics.json), trained once."""
    folder, here = tmp_path_factory.mktemp("runs"), os.getcwd()
    os.chdir(folder)
    try:
        return {"classifier": run(CONFIGS / "iris_mlp_classifier.yaml", *QUIET),
                "regressor": run(CONFIGS / "iris_linear_regression.yaml", *QUIET, "--trainer.max_epochs=1")}
    finally:
        os.chdir(here)


def best(result: Any) -> Path:
    return Path(result.checkpoints["best"])


def poisoned(checkpoint: Path, out: Path, value: float = float("nan")) -> Path:
    """A copy of ``checkpoint`` whose first weight matrix is all ``value``: every answer comes out NaN."""
    data = torch.load(checkpoint, weights_only=True)
    key = next(key for key in data["state_dict"] if key.endswith("weight"))
    data["state_dict"][key] = torch.full_like(data["state_dict"][key], value)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, out)
    return out


class Overflow(nn.Module):
    """The prediction net, except that a row whose first raw column is ``HUGE`` comes out NaN."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where((x[:, :1] == HUGE), torch.nan, self.net(x))


def overflowing(checkpoint: Path) -> Predictor:
    predictor = load(checkpoint)
    predictor.net = Overflow(predictor.net)
    return predictor


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_script(ROOT / "scripts" / name, *args, cwd=cwd)


def errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("checkpoint: ")]


# --- 1. no label beside a NaN --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_the_python_api_refuses_a_nan_answer_naming_its_row(runs, tmp_path, kind):
    bad = poisoned(best(runs[kind]), tmp_path / "nan.ckpt")
    rows = [{name: flower[name] for name in NAMES if kind == "classifier" or name != "petal_width"} for flower in FLOWERS]
    with pytest.raises(PredictionOutputError, match=r"^row 0: the model's answer is not a finite number \((p\(setosa\)|petal_width)=nan\)"):
        load(bad).predict(rows)
    answered = overflowing(best(runs[kind])).predict(rows)  # the same rows answer when the net is finite
    assert np.isfinite(answered.outputs).all()
    with pytest.raises(PredictionOutputError, match=r"^row 1: .*not a finite number") as raised:
        overflowing(best(runs[kind])).predict([rows[0], {**rows[1], "sepal_length": HUGE}])
    assert "\n" not in str(raised.value)


def test_predict_script_refuses_a_nan_answer_in_one_line_and_writes_nothing(runs, tmp_path):
    bad = poisoned(best(runs["classifier"]), tmp_path / "inf.ckpt", float("inf"))
    write_csv(tmp_path / "new.csv", NAMES, [[5.9, 3.0, 4.2, 1.5]] * 3)
    done = script("predict.py", str(bad), "new.csv", "--out", "out.csv", cwd=tmp_path)
    assert done.returncode == 2
    assert errors(done) == ["error: row 0: the model's answer is not a finite number (p(setosa)=nan), so it gets no prediction: "
                            "is the input far outside the training data's range, or are the checkpoint's weights NaN or infinite?"]
    assert not list(tmp_path.glob("out.csv*"))
    to_stdout = script("predict.py", str(bad), "new.csv", cwd=tmp_path)
    assert to_stdout.returncode == 2 and "nan" not in to_stdout.stdout.lower()


def test_a_float32_overflowing_cell_never_prints_a_label_beside_nan(runs, tmp_path):
    """1e308 is inf in float32: refused by the input check or by the answer's, exit 2 either way, no row written."""
    write_csv(tmp_path / "big.csv", NAMES, [[1e308, 3.0, 4.0, 1.0], [5.9, 3.0, 4.2, 1.5]])
    done = script("predict.py", str(best(runs["classifier"])), "big.csv", cwd=tmp_path)
    assert done.returncode == 2 and "nan" not in done.stdout.lower() and "setosa" not in done.stdout
    assert len(errors(done)) == 1 and "Traceback" not in done.stderr


def test_evaluate_refuses_nan_answers_and_writes_no_predictions(runs, tmp_path):
    copy = copied(runs["classifier"], tmp_path / "copy")
    poisoned(copy / "checkpoints" / best(runs["classifier"]).name, copy / "checkpoints" / best(runs["classifier"]).name)
    done = script("evaluate.py", str(copy), cwd=tmp_path)
    assert done.returncode == 2 and errors(done)[-1].startswith("error: row 0: the model's answer is not a finite number")
    assert not (copy / "predictions.csv").exists()


def asgi_post(app: Any, body: bytes) -> tuple[int, Any]:
    """``POST /predict`` with a JSON body, straight into the ASGI app (no server, no HTTP client library)."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    asyncio.run(app(scope, receive, send))
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    return status, json.loads(b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body"))


def test_the_server_answers_422_to_a_nan_answer_and_goes_on_serving(runs):
    pytest.importorskip("fastapi")
    from lightning_models.inference.serve import create_app

    app = create_app(overflowing(best(runs["classifier"])), "best.ckpt")
    status, answer = asgi_post(app, json.dumps([FLOWERS[0], {**FLOWERS[1], "sepal_length": HUGE}]).encode())
    assert status == 422 and answer["error"].startswith("row 1: the model's answer is not a finite number (p(setosa)=nan)")
    status, answer = asgi_post(app, json.dumps(FLOWERS).encode())
    assert status == 200 and [row["predicted"] for row in answer["predictions"]] == load(best(runs["classifier"])).predict(FLOWERS).labels


def test_an_export_refuses_nan_answers_and_a_nan_checkpoint_is_not_exported(runs, tmp_path):
    out = tmp_path / "export"
    export(best(runs["classifier"]), out, "numpy")
    layers = dict(np.load(out / "model.npz"))
    first = next(name for name in layers if name.startswith("layer") and layers[name].ndim == 2)
    layers[first] = np.full_like(layers[first], np.inf)  # the export's weights, not the checkpoint's
    np.savez(out / "model.npz", **layers)
    with pytest.raises(PredictionOutputError, match=r"^row 0: .*not a finite number"), np.errstate(invalid="ignore"):
        load_export(out).predict(FLOWERS)
    with pytest.raises(ExportError, match="answers NaN or infinity on random inputs.*nothing was exported") as raised:
        export(poisoned(best(runs["classifier"]), tmp_path / "nan.ckpt"), tmp_path / "never", "numpy")
    assert "\n" not in str(raised.value) and not (tmp_path / "never").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export", "nan.ckpt"]  # no staging folder left


# --- 2. a run folder's own checkpoint, and which file was used ----------------------------------------------------

def copied(result: Any, to: Path) -> Path:
    return Path(shutil.copytree(result.folder, to))


def test_a_copied_run_folder_predicts_with_its_own_checkpoint_and_says_so(runs, tmp_path):
    copy = copied(runs["classifier"], tmp_path / "copy")
    own = copy / "checkpoints" / best(runs["classifier"]).name
    data = torch.load(own, weights_only=True)
    bias = next(key for key in reversed(list(data["state_dict"])) if key.endswith("bias"))
    data["state_dict"][bias] = data["state_dict"][bias] + torch.tensor([5.0, 0.0, -5.0])  # this copy answers setosa
    torch.save(data, own)

    assert load(copy).checkpoint == own
    assert load(copy).predict(FLOWERS).labels == ["setosa", "setosa"] != load(runs["classifier"].folder).predict(FLOWERS).labels
    write_csv(tmp_path / "new.csv", NAMES, [[5.9, 3.0, 4.2, 1.5]])
    done = script("predict.py", str(copy), "new.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == (f"checkpoint: {own} (the best checkpoint of run folder {copy}, the one its test "
                                           "metrics come from)")
    assert done.stdout.splitlines()[1].split(",")[1] == "setosa"


def test_a_run_folder_without_its_checkpoints_uses_the_recorded_file_and_says_it_is_outside(runs, tmp_path):
    copy = copied(runs["classifier"], tmp_path / "copy")
    for file in (copy / "checkpoints").iterdir():
        file.unlink()
    with pytest.warns(UserWarning, match=f"checkpoint: {best(runs['classifier'])} .*outside the folder"):
        assert load(copy).checkpoint == best(runs["classifier"])
    write_csv(tmp_path / "new.csv", NAMES, [[5.9, 3.0, 4.2, 1.5]])
    done = script("predict.py", str(copy), "new.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == (f"checkpoint: {best(runs['classifier'])} (the best checkpoint of run folder {copy}, at "
                                           f"the path its metrics.json records, outside the folder: its checkpoints/ has no "
                                           f"{best(runs['classifier']).name})")


def test_a_run_folder_whose_best_is_gone_uses_its_own_last_and_says_why(runs, tmp_path):
    copy = copied(runs["classifier"], tmp_path / "copy")
    (copy / "checkpoints" / best(runs["classifier"]).name).unlink()
    assert load(copy).checkpoint == copy / "checkpoints" / "last.ckpt"  # its own, not the original's best
    write_csv(tmp_path / "new.csv", NAMES, [[5.9, 3.0, 4.2, 1.5]])
    done = script("predict.py", str(copy), "new.csv", cwd=tmp_path)
    assert done.stderr.splitlines()[0] == (f"checkpoint: {copy / 'checkpoints' / 'last.ckpt'} (the last checkpoint of run folder "
                                           f"{copy}, as its best, {best(runs['classifier']).name}, is not in its checkpoints/)")
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    (nowhere / "metrics.json").write_text(json.dumps({"checkpoints": {"best": str(tmp_path / "gone.ckpt"), "last": None}}))
    with pytest.raises(CheckpointError, match=f"^{nowhere}: neither its checkpoints/ nor the paths its metrics.json records "):
        load(nowhere)


@pytest.mark.parametrize("name", ["evaluate.py", "export.py", "serve.py"])
def test_every_command_that_loads_a_checkpoint_says_which_file(runs, tmp_path, monkeypatch, name):
    copy = copied(runs["classifier"], tmp_path / "copy")
    args = {"evaluate.py": [], "export.py": ["--format", "numpy", "--out", str(tmp_path / "export")], "serve.py": []}[name]
    if name == "serve.py":
        uvicorn = pytest.importorskip("uvicorn")
        monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    done = script(name, str(copy), *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    own = copy / "checkpoints" / best(runs["classifier"]).name
    line = f"checkpoint: {own} (the best checkpoint of run folder {copy}, the one its test metrics come from)"
    assert line in done.stderr.splitlines()
    assert "checkpoint:" not in done.stdout  # standard output stays the command's own (CSV, metrics)


# --- 3. one line, not a traceback ---------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["net", "module"])
def test_a_checkpoint_whose_classes_do_not_import_names_the_package_and_the_pythonpath(runs, tmp_path, which):
    """The user's package sits in the folder training ran from, which is not on the path of a later command."""
    project = tmp_path / "project"
    package = project / "far_away_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    run_folder = copied(runs["classifier"], project / "lightning_logs" / "mine" / "version_0")
    checkpoint = run_folder / "checkpoints" / best(runs["classifier"]).name
    data = torch.load(checkpoint, weights_only=True)
    if which == "net":
        data["hyper_parameters"]["net"] = {"class_path": "far_away_pkg.nets.ResidualNet", "init_args": {"width": 6}}
    else:
        data["module_class"] = "far_away_pkg.modules.MyModule"
    torch.save(data, checkpoint)
    class_path = {"net": "far_away_pkg.nets.ResidualNet", "module": "far_away_pkg.modules.MyModule"}[which]
    expected = (f"error: {checkpoint}: its class {class_path} does not import: no module named 'far_away_pkg' here; put the "
                f"folder that holds far_away_pkg on PYTHONPATH (PYTHONPATH={project} before the command), or pip install the "
                "package that defines it.")
    write_csv(tmp_path / "new.csv", NAMES, [[5.9, 3.0, 4.2, 1.5]])
    for name, args in [("predict.py", [str(run_folder), "new.csv"]), ("evaluate.py", [str(run_folder)])]:
        done = script(name, *args, cwd=tmp_path)
        assert done.returncode == 2 and errors(done) == [expected] and "Traceback" not in done.stderr, done.stderr[-2000:]
    with pytest.raises(CheckpointError, match="PYTHONPATH="):
        load_module(checkpoint)


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "export"
    export(best(runs["classifier"]), out, "numpy")
    return out


@pytest.mark.parametrize("given", ["folder", "model.npz", "model.json", "lone.onnx", "lone.pt2"])
def test_an_export_given_as_a_checkpoint_points_to_load_export(runs, exported, tmp_path, given):
    if given.startswith("lone"):
        path = tmp_path / given
        if given.endswith(".pt2"):
            torch.export.save(torch.export.export(nn.Linear(4, 3), (torch.zeros(1, 4),)), str(path))
        else:
            path.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x03")  # an ONNX protobuf's first fields
    else:
        path = exported if given == "folder" else exported / given
    write_csv(tmp_path / "new.csv", NAMES, [[5.9, 3.0, 4.2, 1.5]])
    done = script("predict.py", str(path), "new.csv", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = errors(done)
    assert line.startswith(f"error: {path}: ") and ", not a checkpoint; run it with lightning_models.inference.export.load_export(" in line
    if not given.startswith("lone"):
        assert f"load_export('{exported}')" in line and line.endswith(f"exported from: {best(runs['classifier'])}.")


# --- 4. a device this machine does not have -----------------------------------------------------------------------

@pytest.mark.parametrize(("device", "cuda_devices", "expected"), [
    ("cuda", 0, "--device cuda: no CUDA device here; use --device cpu."),
    ("cuda:2", 1, "--device cuda:2: this machine has 1 CUDA device(s), cuda:0 to cuda:0."),
    ("gpu", 0, "--device gpu: not a device name; expected cpu, cuda, cuda:N or mps."),
])
def test_predict_and_serve_on_a_device_that_is_not_there_is_one_line(runs, tmp_path, monkeypatch, device, cuda_devices, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_devices)
    write_csv(tmp_path / "new.csv", NAMES, [[5.9, 3.0, 4.2, 1.5]])
    done = script("predict.py", str(runs["classifier"].folder), "new.csv", "--device", device, cwd=tmp_path)
    assert (done.returncode, done.stderr, done.stdout) == (2, f"error: {expected}\n", "")
    served = script("serve.py", str(runs["classifier"].folder), "--device", device, cwd=tmp_path)
    assert (served.returncode, served.stderr) == (2, f"error: {expected}\n")
    with pytest.raises(ConfigError, match=f"^device={device}: "):
        load(runs["classifier"].folder, device=device)
