"""A bad ``--ckpt_path`` on every ``scripts/train.py`` stage is one line naming the file and what to do (exit status 2,
no traceback), before Lightning's loader sees it; a damaged ``last.ckpt`` resumed with ``fit --ckpt_path last`` names
the run's other, readable checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import CONFIGS, run_train

IRIS = ["--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.enable_progress_bar=false"]
INFO = ("Seed set to", "--ckpt_path last: resuming from")  # Lightning's seed line and the resume notice, not errors


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch iris run (``lightning_logs/iris_mlp_classifier/version_0``) in a folder of its own."""
    folder = tmp_path_factory.mktemp("trained")
    done = run_train(["fit", *IRIS, "--trainer.max_epochs=2"], folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def checkpoints_of(folder: Path) -> Path:
    return folder / "lightning_logs" / "iris_mlp_classifier" / "version_0" / "checkpoints"


def best_of(folder: Path) -> Path:
    (best,) = checkpoints_of(folder).glob("best-*.ckpt")
    return best


class Payload:
    """Stands for code a pickle would run when loaded."""


def write_bad(kind: str, good: Path, path: Path) -> Path:
    data = good.read_bytes()
    if kind == "foreign":  # a Lightning-looking checkpoint carrying an object of a class: loading it runs code
        torch.save({"state_dict": {}, "payload": Payload()}, path)
    elif kind == "damaged":  # bytes changed inside the archive's first member (the pickle), the size unchanged
        path.write_bytes(data[:200] + bytes(64) + data[264:])
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_lightning":  # a PyTorch file, but weights alone
        torch.save({"weight": torch.ones(3)}, path)
    elif kind == "text":
        path.write_text("epoch,loss\n1,0.5\n")
    return path


def error_lines(done) -> list[str]:
    """stderr's lines, less Lightning's info lines; the run's one-line error should be all that is left."""
    return [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(INFO)]


@pytest.mark.parametrize("stage", ["fit", "validate", "test", "predict"])
@pytest.mark.parametrize("kind", ["missing", "foreign", "damaged", "truncated", "not_lightning", "text"])
def test_a_bad_checkpoint_is_one_line_naming_the_file(trained: Path, tmp_path: Path, stage: str, kind: str) -> None:
    bad = tmp_path / "bad" / f"{kind}.ckpt"
    bad.parent.mkdir()
    if kind != "missing":
        write_bad(kind, best_of(trained), bad)
    done = run_train([stage, *IRIS, "--ckpt_path", str(bad)], tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = error_lines(done)
    assert line.startswith(f"error: {bad}: ") and "Traceback" not in done.stderr
    what_to_do = {"missing": "no such checkpoint file", "foreign": "weights_only=False", "damaged": "use an intact copy",
                  "truncated": "truncated", "not_lightning": "pass a .ckpt written by scripts/train.py",
                  "text": "pass a .ckpt written by scripts/train.py"}
    assert what_to_do[kind] in line
    assert not (tmp_path / "lightning_logs").exists()  # refused before a run folder was made


def test_a_truncated_last_checkpoint_names_the_runs_readable_one_when_resuming(trained: Path, tmp_path: Path) -> None:
    shutil.copytree(trained / "lightning_logs", tmp_path / "lightning_logs")
    last = checkpoints_of(tmp_path) / "last.ckpt"
    last.write_bytes(last.read_bytes()[:-100])  # the write was cut off near its end
    done = run_train(["fit", *IRIS, "--trainer.max_epochs=3", "--ckpt_path", "last"], tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = error_lines(done)
    assert line.startswith(f"error: {Path('lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt')}: ")
    assert line.endswith(f"A readable checkpoint of the same run: {best_of(tmp_path).relative_to(tmp_path)}")
    assert "Traceback" not in done.stderr


def test_the_runs_own_checkpoints_still_load_on_every_stage(trained: Path, tmp_path: Path) -> None:
    shutil.copytree(trained / "lightning_logs", tmp_path / "lightning_logs")
    for stage in ("validate", "test"):
        done = run_train([stage, *IRIS, "--ckpt_path", str(best_of(tmp_path))], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    resumed = run_train(["fit", *IRIS, "--trainer.max_epochs=3", "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((checkpoints_of(tmp_path).parent / "metrics.json").read_text())
    assert record["epochs"] == 3 and record["global_step"] == 3  # continued in its own folder from epoch 2: one full batch an epoch


def test_an_export_given_as_ckpt_path_points_to_load_export(trained: Path, tmp_path: Path) -> None:
    """A ``.onnx`` / ``.pt2`` model or an export folder is not "damaged": it is named as what it is."""
    from lightning_models.inference.export import export

    out = tmp_path / "export"
    export(best_of(trained), out, "numpy")
    for given in (out, out / "model.npz"):
        done = run_train(["test", *IRIS, "--ckpt_path", str(given)], tmp_path)
        assert done.returncode == 2, done.stderr[-3000:]
        (line,) = error_lines(done)
        assert line.startswith(f"error: {given}: ") and f"load_export('{out}')" in line and str(best_of(trained)) in line
    assert not (tmp_path / "lightning_logs").exists()
