"""scripts/serve.py as a client sees it: the real server in its own process on 127.0.0.1, over an iris classifier and
an image-folder classifier trained once for the module, called over HTTP; its answers against ``load(ckpt).predict``
in this process, and every refused request a 4xx with a one-line ``{"error": ...}`` after which it still serves."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from lightning_models import load, run
from tests.conftest import CONFIGS, ROOT
from tests.helpers import free_port, run_script, write_folder

pytestmark = pytest.mark.slow  # two real servers in their own processes

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
FLOWERS = [{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5},
           {"sepal_length": 6.7, "sepal_width": 3.1, "petal_length": 5.6, "petal_width": 2.4}]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]
MAX_BODY_BYTES = 50_000  # the servers' --max-body-bytes: small, so an oversized body is cheap to send


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    checkpoint: Path
    log: Path


def start(checkpoint: Path, log: Path) -> Server:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as handle:  # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), str(checkpoint), "--port", str(port),
                                    "--max-body-bytes", str(MAX_BODY_BYTES)], stdout=handle, stderr=subprocess.STDOUT, env=env)
    return Server(process, port, checkpoint, log)


def wait_until_healthy(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.process.poll() is None, f"the server exited:\n{server.log.read_text()}"
        try:
            if call(server, "GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no /health within {timeout} s:\n{server.log.read_text()}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, Server]]:
    """Trains both models (in this process) and serves each from its best checkpoint; the iris server starts
    while the image model trains."""
    root = tmp_path_factory.mktemp("serve")
    here, started = os.getcwd(), {}
    os.chdir(root)
    try:
        iris = run(str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.max_epochs=3", *QUIET)
        started["iris"] = start(Path(iris.checkpoints["best"]), root / "iris.log")
        write_folder(root / "images", per_class=10)
        images = run(str(CONFIGS / "examples" / "image_folder.yaml"), "--data.init_args.root", str(root / "images"),
                     "--trainer.precision", "32-true", "--trainer.max_epochs=1", "--trainer.callbacks=[]", *QUIET)
        started["image"] = start(Path(images.checkpoints["best"]), root / "image.log")
        for server in started.values():
            wait_until_healthy(server)
        yield started
    finally:
        os.chdir(here)
        for server in started.values():
            server.process.terminate()
            server.process.wait(timeout=30)


@pytest.fixture(scope="module")
def image_files(servers) -> list[Path]:
    return sorted(Path(servers["image"].checkpoint).parents[4].glob("images/*/00[01].png"))


def call(server: Server, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """The status and parsed JSON body of one request on a fresh connection (an iterable body goes chunked)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        try:
            connection.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):  # the server answered (413) and closed before the body was all sent
            pass
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post_json(server: Server, data: Any) -> tuple[int, Any]:
    return call(server, "POST", "/predict", json.dumps(data).encode(), {"Content-Type": "application/json"})


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body uploading ``files`` (name, content) as field ``file``, plus plain ``fields``."""
    boundary = "test-serve-boundary-7f3a"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
             for key, value in (fields or {}).items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n" for name, content in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def assert_same_answers(served: list[dict[str, Any]], expected: list[dict[str, Any]], ids: list[Any]) -> None:
    assert [row["id"] for row in served] == ids
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        assert got.keys() == want.keys()
        assert got["predicted"] == want["predicted"]
        assert {key: value for key, value in got.items() if key not in ("id", "predicted")} == pytest.approx(
            {key: value for key, value in want.items() if key not in ("id", "predicted")}, abs=1e-6)


def assert_refused(status: int, answer: Any, expected_status: int, names: str) -> None:
    assert status == expected_status, answer
    assert list(answer) == ["error"] and isinstance(answer["error"], str), answer
    assert "\n" not in answer["error"] and names in answer["error"], answer


def assert_still_serving(iris: Server) -> None:
    assert iris.process.poll() is None
    status, answer = post_json(iris, FLOWERS[:1])
    assert status == 200 and answer["predictions"][0]["predicted"] in IRIS_CLASSES


def test_health_says_what_each_model_is(servers):
    status, iris = call(servers["iris"], "GET", "/health")
    assert status == 200
    assert iris == {"status": "ok", "checkpoint": servers["iris"].checkpoint.name, "kind": "table", "task": "classification",
                    "inputs": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "classes": IRIS_CLASSES,
                    "outputs": None}
    status, image = call(servers["image"], "GET", "/health")
    assert status == 200
    assert image == {"status": "ok", "checkpoint": servers["image"].checkpoint.name, "kind": "image", "task": "classification",
                     "image_shape": [1, 28, 28], "classes": ["bar", "column", "cross"], "outputs": None}


@pytest.mark.parametrize("body", [{"rows": FLOWERS}, FLOWERS], ids=["rows object", "bare list"])
def test_rows_get_the_answers_of_predict(servers, body):
    status, answer = post_json(servers["iris"], body)
    assert status == 200 and list(answer) == ["predictions"]
    expected = load(servers["iris"].checkpoint).predict(FLOWERS).rows()  # in this process, from the same file
    assert_same_answers(answer["predictions"], expected, [0, 1])
    for row in answer["predictions"]:  # a distribution over the classes, its largest named
        probabilities = [row[f"p({name})"] for name in IRIS_CLASSES]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert row["predicted"] == IRIS_CLASSES[probabilities.index(max(probabilities))] and row["probability"] == max(probabilities)


def test_one_row_object_and_extra_columns(servers):
    status, answer = post_json(servers["iris"], {**FLOWERS[1], "colour": "blue"})
    assert status == 200
    assert_same_answers(answer["predictions"], load(servers["iris"].checkpoint).predict(FLOWERS[1:]).rows(), [0])


def test_concurrent_clients_each_get_their_own_answer(servers):
    rows = [{**FLOWERS[index % 2], "sepal_length": 4.5 + 0.1 * index, "petal_length": 1.0 + 0.2 * index} for index in range(24)]
    expected = load(servers["iris"].checkpoint).predict(rows).rows()
    answers: dict[int, Any] = {}

    def client(indices: range) -> None:
        for index in indices:
            answers[index] = post_json(servers["iris"], [rows[index]])

    threads = [threading.Thread(target=client, args=(range(start, 24, 8),)) for start in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == list(range(24))
    for index, (status, answer) in answers.items():
        assert status == 200
        assert_same_answers(answer["predictions"], [{**expected[index], "id": 0}], [0])


def rows_with(**changes: Any) -> bytes:
    return json.dumps({"rows": [FLOWERS[0], {**FLOWERS[1], **changes}]}).encode()


BAD_TABLE_REQUESTS = {  # body, Content-Type, status, what the error line must name
    "missing column": (json.dumps([{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2}]).encode(),
                       "application/json", 422, "row 0: no column 'petal_width'"),
    "text in a number": (rows_with(sepal_width="three"), "application/json", 422, "row 1, column 'sepal_width': 'three' is not a number"),
    "malformed JSON": (b'{"rows": [{"sepal_length": 5.9,', "application/json", 422, "the body is not valid JSON"),
    "not UTF-8": (b"\xff\xfe\xff", "application/json", 400, "error parsing the body"),
    "a number, not rows": (b"42", "application/json", 422, "the body 42 is not rows; send JSON"),
    "a row that is not an object": (b"[[5.9, 3.0, 4.2, 1.5]]", "application/json", 422, "the body [[5.9, 3.0, 4.2, 1.5]] is not rows"),
    "no rows": (b'{"rows": []}', "application/json", 422, "the input is empty"),
    "an upload": (*multipart([("flowers.csv", b"sepal_length\n5.9\n")]), 422, "is not rows; send JSON"),
}


@pytest.mark.parametrize("case", BAD_TABLE_REQUESTS, ids=list(BAD_TABLE_REQUESTS))
def test_bad_rows_get_a_one_line_error_and_the_server_goes_on(servers, case):
    body, content_type, expected_status, names = BAD_TABLE_REQUESTS[case]
    headers = content_type if isinstance(content_type, dict) else {"Content-Type": content_type}
    assert_refused(*call(servers["iris"], "POST", "/predict", body, headers), expected_status, names)
    assert_still_serving(servers["iris"])


def test_oversized_bodies_get_413_from_the_length_and_while_reading(servers):
    big = json.dumps({"rows": [FLOWERS[0]] * 1000}).encode()  # valid rows, only too many bytes
    assert len(big) > MAX_BODY_BYTES
    assert_refused(*call(servers["iris"], "POST", "/predict", big, {"Content-Type": "application/json"}), 413,
                   f"over the limit of {MAX_BODY_BYTES} bytes")
    assert_still_serving(servers["iris"])
    chunked = (big[start:start + 4096] for start in range(0, len(big), 4096))  # no Content-Length: only reading can tell
    assert_refused(*call(servers["iris"], "POST", "/predict", chunked, {"Content-Type": "application/json"}), 413,
                   f"over the limit of {MAX_BODY_BYTES} bytes")
    assert_still_serving(servers["iris"])
    small = json.dumps(FLOWERS).encode()  # under the limit, chunked: read to the end and answered
    status, answer = call(servers["iris"], "POST", "/predict", iter([small[:20], small[20:]]), {"Content-Type": "application/json"})
    assert status == 200 and len(answer["predictions"]) == 2


def test_an_oversized_content_length_is_refused_before_the_body_is_sent(servers):
    connection = http.client.HTTPConnection("127.0.0.1", servers["iris"].port, timeout=30)
    try:  # the headers only: a server that read the body first would wait here until the timeout
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert_refused(response.status, json.loads(response.read()), 413, f"of {MAX_BODY_BYTES + 1} bytes (Content-Length)")
    finally:
        connection.close()
    assert_still_serving(servers["iris"])


def test_wrong_path_and_method_answer_in_the_same_shape(servers):
    assert_refused(*call(servers["iris"], "GET", "/nowhere"), 404, "Not Found")
    assert_refused(*call(servers["iris"], "GET", "/predict"), 405, "Method Not Allowed")
    status, schema = call(servers["iris"], "GET", "/openapi.json")  # FastAPI's schema of the request models (/docs)
    assert status == 200 and "Rows" in schema["components"]["schemas"] and "post" in schema["paths"]["/predict"]


def test_uploaded_images_get_the_answers_of_predict(servers, image_files):
    assert len(image_files) == 6
    body, headers = multipart([(path.name, path.read_bytes()) for path in image_files[:2]], fields={"note": "ignored"})
    status, answer = call(servers["image"], "POST", "/predict", body, headers)
    assert status == 200, answer
    expected = load(servers["image"].checkpoint).predict([str(path) for path in image_files[:2]]).rows()
    assert_same_answers(answer["predictions"], expected, [path.name for path in image_files[:2]])


@pytest.mark.parametrize("case", ["text file", "empty file", "no file", "JSON body"])
def test_bad_uploads_get_a_one_line_error_and_the_server_goes_on(servers, image_files, case):
    server = servers["image"]
    if case == "JSON body":
        assert_refused(*post_json(server, FLOWERS), 422, "file: Field required; send images as multipart/form-data files")
    elif case == "no file":
        assert_refused(*call(server, "POST", "/predict", *multipart([], {"note": "hello"})), 422, "file: Field required")
    else:
        content = b"" if case == "empty file" else b"sepal_length,sepal_width\n5.9,3.0\n"
        files = [(image_files[0].name, image_files[0].read_bytes()), ("notes.txt", content)]
        assert_refused(*call(server, "POST", "/predict", *multipart(files)), 422, "notes.txt: not an image that decodes")
    assert server.process.poll() is None
    status, answer = call(server, "POST", "/predict", *multipart([(image_files[-1].name, image_files[-1].read_bytes())]))
    assert status == 200 and answer["predictions"][0]["id"] == image_files[-1].name


@pytest.mark.parametrize("case", ["missing", "not a checkpoint"])
def test_a_bad_checkpoint_exits_2_with_one_line(tmp_path, monkeypatch, case):
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("the server started on a bad checkpoint"))
    path = tmp_path / "model.ckpt"
    if case == "not a checkpoint":
        path.write_text("not a checkpoint\n")
    result = run_script(ROOT / "scripts" / "serve.py", str(path), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr
    assert ("no such checkpoint file" if case == "missing" else "not a PyTorch checkpoint") in lines[0]
