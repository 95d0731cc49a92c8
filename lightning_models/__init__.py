"""The library: task modules, nets (``lightning_models.nets``), ``run``/``build``, ``load``, ``compare``
(docs/layout.md); names import on first use, so importing one layer never imports those above it."""

import importlib
from typing import Any

_WHERE = {
    "AutoencoderModule": "autoencoder", "ClassificationModule": "classification", "RegressionModule": "regression",
    "CosineToZero": "base", "TaskModule": "base", "Comparison": "workflows.compare", "compare": "workflows.compare",
    "Predictions": "inference.predictor", "Predictor": "inference.predictor", "load": "inference.predictor",
    "RunResult": "training.run", "build": "training.run", "run": "training.run",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lightning_models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lightning_models.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
