"""TensorBoard panels as callbacks, one per kind of picture."""

from lightning_models.callbacks.panel import PredictionPanel
from lightning_models.callbacks.tabular import ConfusionMatrixPanel, LatentCodePanel, ObservedVsPredictedPanel

__all__ = ["ConfusionMatrixPanel", "LatentCodePanel", "ObservedVsPredictedPanel", "PredictionPanel"]
