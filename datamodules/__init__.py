"""LightningDataModules of the template."""

from datamodules.iris import IrisDataModule
from datamodules.tensor import TensorBatches, TensorDataModule

__all__ = ["IrisDataModule", "TensorBatches", "TensorDataModule"]
