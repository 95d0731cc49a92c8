"""TensorBoard as a user sees it: a real server on 127.0.0.1 over short runs, queried through its HTTP data API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CONFIGS
from tests.test_fashion_mnist import write_idx

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
RUNS = {
    "iris_mlp_classifier": ["--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.max_epochs=2"],
    "iris_mlp_regressor": ["--config", str(CONFIGS / "iris_mlp_regressor.yaml"), "--trainer.max_epochs=2"],
    "xor_logistic_regression_quadrant": ["--config", str(CONFIGS / "xor_logistic_regression_quadrant.yaml"),
                                         "--trainer.max_epochs=2"],
    "fashion_cnn": ["--config", str(CONFIGS / "fashion_cnn.yaml"), "--data.data_dir=tiny", "--data.val_size=16",
                    "--data.batch_size=16", "--data.download=false", "--trainer.max_steps=1"],
}
EXPECTED_IMAGES = {
    "iris_mlp_classifier": {"val/confusion_matrix", "test/confusion_matrix"},
    "iris_mlp_regressor": {"val/observed_vs_predicted", "test/observed_vs_predicted"},
    "xor_logistic_regression_quadrant": {"test/decision_surface"},
    "fashion_cnn": {"data/sample_images", "val/misclassified", "test/misclassified", "test/confusion_matrix",
                    "test/per_class_accuracy"},
}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory) -> Path:
    from lightning_models.cli import TemplateCLI

    root = tmp_path_factory.mktemp("tensorboard")
    write_idx(root / "tiny")
    here = os.getcwd()
    os.chdir(root)
    try:
        for args in RUNS.values():
            TemplateCLI(args=["fit", *args, *QUIET])
    finally:
        os.chdir(here)
    return root / "lightning_logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, **query: str) -> bytes:
    url = f"http://127.0.0.1:{port}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def server(log_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:  # until every run's images are loaded
            assert process.poll() is None, process.stdout.read()
            try:
                tags = json.loads(get(port, "/data/plugin/images/tags"))
                if all(want <= set(tags.get(f"{name}/version_0", {})) for name, want in EXPECTED_IMAGES.items()):
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "TensorBoard did not serve the expected image tags within 90 s"
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_server_serves_the_scalar_tags_and_values(server, log_dir):
    scalars = json.loads(get(server, "/data/plugin/scalars/tags"))
    for name in RUNS:
        tags = set(scalars[f"{name}/version_0"])
        assert {"train/loss", "val/loss", "test/loss"} <= tags, (name, tags)
    assert {"train/acc", "val/acc", "test/acc", "test/f1"} <= set(scalars["iris_mlp_classifier/version_0"])
    assert {"test/r2", "test/mse"} <= set(scalars["iris_mlp_regressor/version_0"])
    assert "test/sklearn_acc" in scalars["xor_logistic_regression_quadrant/version_0"]
    # The served test accuracy is the one metrics.json reports.
    served = json.loads(get(server, "/data/plugin/scalars/scalars", run="iris_mlp_classifier/version_0", tag="test/acc"))
    recorded = json.loads((log_dir / "iris_mlp_classifier" / "version_0" / "metrics.json").read_text())["test"]["test/acc"]
    assert served[-1][2] == pytest.approx(recorded)


def test_server_serves_the_panels_as_png_images(server):
    tags = json.loads(get(server, "/data/plugin/images/tags"))
    for name, want in EXPECTED_IMAGES.items():
        assert want <= set(tags[f"{name}/version_0"]), name
    entries = json.loads(get(server, "/data/plugin/images/images", run="fashion_cnn/version_0", tag="test/misclassified"))
    image = get(server, f"/data/plugin/images/individualImage?{entries[-1]['query']}")
    assert image.startswith(b"\x89PNG") and len(image) > 1000
