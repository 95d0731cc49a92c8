"""A trained model over HTTP: ``python scripts/serve.py CHECKPOINT --port 8000`` (FastAPI and uvicorn: ``pip install -e ".[serve]"``).

    curl -s 127.0.0.1:8000/health
    curl -s 127.0.0.1:8000/predict -H 'Content-Type: application/json' \\
         -d '{"rows": [{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5}]}'
    curl -s 127.0.0.1:8000/predict -F file=@picture.png -F file=@another.png

``POST /predict`` answers ``{"predictions": [...]}``, the rows of ``load(checkpoint).predict(inputs).rows()``. A table
model takes JSON: ``{"rows": [{column: value, ...}, ...]}``, a bare list of such rows, or one row object (columns by
name, any order, extra ones ignored). An image model takes multipart/form-data file uploads (any field name, several
files in one request), each answer's ``id`` the upload's file name. ``GET /health``: ``status`` ``ok`` and what the model
is (checkpoint, kind, task, inputs or image shape, classes or outputs). A refused request gets a 4xx and
``{"error": "<one line>"}``; the server goes on serving. It listens on 127.0.0.1 unless ``--host`` says otherwise: it has
no authentication.
"""

import argparse
import json
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import torch

from lightning_models.checks import ConfigError
from lightning_models.inference.prediction_inputs import PredictionInputError, chunks, to_image_tensor
from lightning_models.inference.predictor import Predictor, check_device, load
from lightning_models.training.checkpoints import choose_checkpoint

if TYPE_CHECKING:
    from fastapi import FastAPI

DEFAULT_MAX_BODY_BYTES = 10_000_000
ROWS_SHAPE = 'JSON {"rows": [{"<column>": <value>, ...}, ...]}, a list of such rows, or one row object'
UPLOAD_SHAPE = "images as multipart/form-data files (curl -F file=@picture.png)"

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a request body grows past the limit, before the app reads more of it."""


async def send_error(send: Send, status: int, message: str) -> None:
    """A ``{"error": message}`` response at the ASGI level; ``Connection: close``, as the body may be unread."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware that answers 413 to a request body over ``max_body_bytes``: at once when its Content-Length says
    so, and while reading when it grows past the limit (a chunked body), so no request holds more than that in memory.

        app.add_middleware(BodyLimit, max_body_bytes=10_000_000)
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    def too_large(self, size: str) -> str:
        return (f"the request body{size} is over the limit of {self.max_body_bytes} bytes (--max-body-bytes); "
                "send fewer rows or files per request.")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await send_error(send, 413, self.too_large(f" of {int(length)} bytes (Content-Length)"))
            return
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await send_error(send, 413, self.too_large(""))


def parse_rows(body: bytes) -> list[dict[str, Any]]:
    """The table rows of a JSON request body (``ROWS_SHAPE``), or a ``RequestError`` naming what is wrong."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        raise RequestError(400, f"the body is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
                                f"send {ROWS_SHAPE}.") from None
    except ValueError:  # bytes that are not UTF-8/16/32 text
        raise RequestError(400, f"the body is not UTF-8 text; send {ROWS_SHAPE}.") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    rows = [data] if isinstance(data, dict) else data
    if not isinstance(rows, list):
        kind = {"str": "string", "int": "number", "float": "number", "bool": "boolean"}.get(type(data).__name__, "null")
        raise RequestError(422, f"a JSON {kind} ({json.dumps(data)[:40]}) is not rows; send {ROWS_SHAPE}.")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(422, f"row {index} is {json.dumps(row)[:40]}, not an object of named columns; send {ROWS_SHAPE}.")
    return rows


class ServedModel:
    """A ``Predictor`` shared by the server's worker threads: one forward pass at a time (the lock), as the module and
    its buffers are shared state; decoding and JSON parsing run outside the lock.

        ServedModel(load("last.ckpt"), "last.ckpt").predict_json(b'[{"sepal_length": 5.9, ...}]')
    """

    def __init__(self, predictor: Predictor, name: str) -> None:
        self.predictor, self.name, self.lock = predictor, name, threading.Lock()

    def health(self) -> dict[str, Any]:
        spec, predictor = self.predictor.spec, self.predictor
        task = "classification" if predictor.class_names else "autoencoder" if predictor.encoder is not None else "regression"
        about: dict[str, Any] = {"status": "ok", "checkpoint": self.name, "kind": spec["kind"], "task": task}
        if predictor.image:
            about["image_shape"] = spec["image_shape"]
        else:
            about["inputs"] = spec["features"]
            if spec.get("categorical"):
                about["levels"] = spec["categorical"]
        return {**about, "classes": predictor.class_names, "outputs": None if predictor.class_names else predictor.columns}

    def predict_json(self, body: bytes) -> list[dict[str, Any]]:
        if self.predictor.image:
            raise RequestError(415, f"this model takes {UPLOAD_SHAPE}, not a JSON body.")
        rows = parse_rows(body)
        with self.lock:
            return self.predictor.predict(rows).rows()

    def predict_uploads(self, uploads: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """Each upload decoded and resized as ``predict()`` does a file (``to_image_tensor``), its ``id`` the file name."""
        if not self.predictor.image:
            raise RequestError(415, f"this model takes table rows as {ROWS_SHAPE} (Content-Type: application/json), not uploads.")
        if not uploads:
            raise RequestError(400, f"the multipart body holds no file; send {UPLOAD_SHAPE}.")
        answers = []
        for chunk in chunks(uploads, 256):
            batch = torch.stack([to_image_tensor(data, self.predictor.spec, name) for name, data in chunk])
            with self.lock:
                answers += self.predictor.answer([name for name, _ in chunk], batch).rows()
        return answers


def create_app(predictor: Predictor, name: str, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> "FastAPI":
    """The FastAPI app serving ``predictor`` (``name``: the checkpoint's, for ``/health``); run it with uvicorn."""
    # Imported here so that lightning_models imports without the [serve] extra. This module has no
    # `from __future__ import annotations`: FastAPI reads the handlers' annotations, and these names are local.
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    model = ServedModel(predictor, name)
    app = FastAPI(title=f"lightning-tutorial-template: {name}")
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)  # FastAPI's own refusals (404, 405, a malformed multipart body) in our shape
    async def http_error(request: Request, exception: HTTPException) -> JSONResponse:
        return error(exception.status_code, str(exception.detail), exception.headers)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exception: RequestError) -> JSONResponse:
        return error(exception.status, exception.message)

    @app.exception_handler(PredictionInputError)  # PredictionOutputError too: a NaN answer is never sent beside a label
    async def input_error(request: Request, exception: PredictionInputError) -> JSONResponse:
        return error(422, str(exception))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return model.health()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            async with request.form() as form:
                files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
                uploads = [(file.filename or f"upload {index}", await file.read()) for index, file in enumerate(files)]
            rows = await run_in_threadpool(model.predict_uploads, uploads)
        else:  # JSON whatever the Content-Type says: curl -d sends form-urlencoded unless told
            rows = await run_in_threadpool(model.predict_json, await request.body())
        return {"predictions": rows}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/serve.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py, or a run folder (its best checkpoint)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 opens it to "
                                                            "the network, with no authentication)")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest request body accepted, else 413 (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1, mps (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.max_body_bytes < 1:
        parser.error(f"--max-body-bytes {args.max_body_bytes}: expected a positive number of bytes")
    try:
        import uvicorn
    except ImportError as missing:
        parser.exit(2, f"error: the server needs {missing.name}; install it with pip install -e '.[serve]'\n")
    try:
        check_device(args.device, "--device ")
        chosen = choose_checkpoint(args.checkpoint)
        predictor = load(chosen.path, device=args.device)
    except ConfigError as bad:  # CheckpointError, a device this machine lacks
        parser.exit(2, f"error: {bad}\n")
    app = create_app(predictor, chosen.path.name, args.max_body_bytes)
    print(chosen.line(), file=sys.stderr)
    print(f"serving {args.checkpoint} ({predictor.spec['kind']} model) on http://{args.host}:{args.port}: "
          "GET /health, POST /predict", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
