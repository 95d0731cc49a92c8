"""LightningDataModules of the template."""

from datamodules.iris import IrisDataModule
from datamodules.synthetic import FunctionDataModule, PlaneDataModule
from datamodules.tensor import TensorBatches, TensorDataModule

__all__ = ["FunctionDataModule", "IrisDataModule", "PlaneDataModule", "TensorBatches", "TensorDataModule"]
