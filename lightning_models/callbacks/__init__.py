"""TensorBoard panels as callbacks, one per kind of picture; and the callbacks every run or a speed sweep uses."""

from lightning_models.callbacks.class_balance import ClassBalance
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
from lightning_models.callbacks.time_to_target import TimeToTarget

__all__ = [
    "ClassBalance",
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
    "TimeToTarget",
]
