"""The template's library: the task modules and the nets they wrap (``lightning_models.nets``), ``run``/``build`` for a run,
``load`` for a trained model, ``compare`` for runs side by side (docs/layout.md)."""

from lightning_models.autoencoder import AutoencoderModule
from lightning_models.base import CosineToZero, TaskModule
from lightning_models.classification import ClassificationModule
from lightning_models.inference.predictor import Predictions, Predictor, load
from lightning_models.regression import RegressionModule
from lightning_models.training.run import RunResult, build, run
from lightning_models.workflows.compare import Comparison, compare

__all__ = ["AutoencoderModule", "ClassificationModule", "Comparison", "CosineToZero", "Predictions", "Predictor", "RegressionModule",
           "RunResult", "TaskModule", "build", "compare", "load", "run"]
