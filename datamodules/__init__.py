"""LightningDataModules of the template."""

from datamodules.csv_table import CSVDataModule
from datamodules.fashion_mnist import FashionMNISTDataModule
from datamodules.image_folder import ImageFolderDataModule
from datamodules.images import ImageBatches, ImageDataModule
from datamodules.iris import IrisDataModule
from datamodules.synthetic import FunctionDataModule, PlaneDataModule
from datamodules.tensor import TensorBatches, TensorDataModule

__all__ = [
    "CSVDataModule", "FashionMNISTDataModule", "FunctionDataModule", "ImageBatches", "ImageDataModule",
    "ImageFolderDataModule", "IrisDataModule", "PlaneDataModule", "TensorBatches", "TensorDataModule"]
