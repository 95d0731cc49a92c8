"""The template's library: the task modules and the nets they wrap (``lightning_models.nets``), ``run``/``build`` for a run,
``load`` for a trained model, ``compare`` for runs side by side (docs/layout.md).

The names below are imported on first use, so that importing one module of a layer (``lightning_models.checks``, as
``datamodules`` does) does not import every layer above it.
"""

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
