"""TensorBoard panels as callbacks, one per kind of picture."""

from lightning_models.callbacks.images import MisclassifiedImagesPanel, PerClassAccuracyPanel, SampleImagesPanel
from lightning_models.callbacks.panel import PredictionPanel
from lightning_models.callbacks.synthetic import (
    DecisionSurfacePanel,
    FunctionFitPanel,
    LossCurvePanel,
    ParameterPathPanel,
    PolynomialPanel,
    SklearnBaseline,
)
from lightning_models.callbacks.tabular import ConfusionMatrixPanel, LatentCodePanel, ObservedVsPredictedPanel

__all__ = [
    "ConfusionMatrixPanel",
    "DecisionSurfacePanel",
    "FunctionFitPanel",
    "LatentCodePanel",
    "LossCurvePanel",
    "MisclassifiedImagesPanel",
    "ObservedVsPredictedPanel",
    "ParameterPathPanel",
    "PerClassAccuracyPanel",
    "PolynomialPanel",
    "PredictionPanel",
    "SampleImagesPanel",
    "SklearnBaseline",
]
