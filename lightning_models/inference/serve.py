"""``scripts/serve.py``'s FastAPI app: ``POST /predict`` answers ``predict(inputs).rows()``; a refusal is ``{"error": line}``."""

import threading
from typing import Annotated, Any

import torch

from lightning_models.checks import ConfigError
from lightning_models.inference.prediction_inputs import to_image_tensor
from lightning_models.inference.predictor import Predictor

DEFAULT_MAX_BODY_BYTES = 10_000_000
SHAPES = {"table": 'JSON {"rows": [{"<column>": <value>, ...}, ...]}, a list of such rows, or one row object',
          "image": "images as multipart/form-data files (curl -F file=@picture.png)"}


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length before reading, else while reading."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from fastapi import HTTPException

        length, received = dict(scope.get("headers", [])).get(b"content-length", b""), 0
        declared = f" of {int(length)} bytes (Content-Length)" if length.isdigit() and int(length) > self.max_bytes else ""

        async def counted() -> dict:  # FastAPI answers an HTTPException raised while it reads the body with its handler
            nonlocal received
            message = {} if declared else await receive()  # a declared excess: refused before the body is sent
            received += len(message.get("body", b""))
            if declared or received > self.max_bytes:
                raise HTTPException(413, f"the request body{declared} is over the limit of {self.max_bytes} bytes "
                                         "(--max-body-bytes); send fewer rows or files per request.", {"Connection": "close"})
            return message

        await self.app(scope, counted, send)


def create_app(predictor: Predictor, name: str, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """The FastAPI app serving ``predictor`` (``name``: the checkpoint's, for ``/health``); run it with uvicorn."""
    # Imported here: lightning_models imports without the [serve] extra (no `from __future__ import annotations`:
    # FastAPI reads the handlers' annotations).
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException

    spec, image = predictor.spec, predictor.image

    class Rows(BaseModel):
        rows: list[dict[str, Any]]

    app = FastAPI(title=f"lightning-tutorial-template: {name}")
    lock = threading.Lock()  # one forward pass at a time: the module and its buffers are shared by the worker threads

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)  # FastAPI's own refusals (404, 405, a body that does not parse) in our shape
    async def http_error(request: Request, exception: HTTPException) -> JSONResponse:
        return error(exception.status_code, str(exception.detail), exception.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exception: RequestValidationError) -> JSONResponse:
        first = exception.errors()[0]
        reason = (f"the body is not valid JSON ({first['ctx']['error']} at position {first['loc'][-1]})" if first["type"] == "json_invalid"
                  else f"{first['loc'][-1]}: {first['msg']}" if image else f"the body {str(first['input'])[:40]} is not rows")
        return error(422, f"{reason}; send {SHAPES[spec['kind']]}.")

    @app.exception_handler(ConfigError)  # bad input, or a NaN answer: never sent beside a label
    async def input_error(request: Request, exception: Exception) -> JSONResponse:
        return error(422, str(exception))

    @app.get("/health")
    def health() -> dict[str, Any]:
        classes, task = predictor.class_names, "autoencoder" if predictor.encoder is not None else "regression"
        about = {"image_shape": spec["image_shape"]} if image else {"inputs": spec["features"], "levels": spec.get("categorical")}
        return {"status": "ok", "checkpoint": name, "kind": spec["kind"], "task": "classification" if classes else task,
                **{key: value for key, value in about.items() if value}, "classes": classes,
                "outputs": None if classes else predictor.columns}

    if image:
        @app.post("/predict")
        def predict_images(file: Annotated[list[UploadFile], File(description="image files")]) -> dict[str, Any]:
            batch = torch.stack([to_image_tensor(upload.file.read(), spec, upload.filename or f"upload {index}")
                                 for index, upload in enumerate(file)])
            with lock:
                return {"predictions": predictor.answer([upload.filename for upload in file], batch).rows()}
    else:
        @app.post("/predict")
        def predict_rows(body: Annotated[Rows | list[dict[str, Any]] | dict[str, Any], Field(union_mode="left_to_right")]
                         ) -> dict[str, Any]:
            with lock:
                return {"predictions": predictor.predict(body.rows if isinstance(body, Rows) else body).rows()}
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app
