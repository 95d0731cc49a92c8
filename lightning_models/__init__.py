"""LightningModules of the template, and the plain nets they wrap (``lightning_models.nets``)."""

from lightning_models.autoencoder import AutoencoderModule
from lightning_models.base import CosineToZero, TaskModule
from lightning_models.classification import ClassificationModule
from lightning_models.regression import RegressionModule
from lightning_models.run import RunResult, build, run

__all__ = ["AutoencoderModule", "ClassificationModule", "CosineToZero", "RegressionModule", "RunResult", "TaskModule", "build", "run"]
