"""Panels by content: each panel's ``draw`` on planted rows, checking the numbers it draws."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from sklearn.metrics import confusion_matrix

from lightning_models.callbacks import ConfusionMatrixPanel, ObservedVsPredictedPanel


def fake_trainer(names: list[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(datamodule=SimpleNamespace(class_names=names), global_step=7)


def test_confusion_matrix_draws_the_counts_rows_true_columns_predicted():
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (200,), generator=generator)
    scores = torch.randn(200, 4, generator=generator)
    scores[torch.arange(200)[:120], targets[:120]] += 5  # 120 rows surely right, the rest at random
    names = ["cat", "dog", "bird", "fish"]
    figure = ConfusionMatrixPanel().draw(fake_trainer(names), None, {"predictions": scores, "targets": targets})
    axes = figure.axes[0]
    drawn = np.zeros((4, 4), dtype=int)
    for text in axes.texts:  # one number per cell, centred on (column, row)
        x, y = text.get_position()
        drawn[round(y), round(x)] = int(text.get_text())
    expected = confusion_matrix(targets.numpy(), scores.argmax(1).numpy(), labels=range(4))
    np.testing.assert_array_equal(drawn, expected)
    assert [label.get_text() for label in axes.get_yticklabels()] == names  # rows: the true classes, by name
    assert [label.get_text() for label in axes.get_xticklabels()] == names


def test_observed_vs_predicted_draws_one_point_per_row_and_the_diagonal():
    observed = torch.tensor([[0.5], [1.0], [2.0], [3.5]])
    predicted = torch.tensor([[0.7], [0.9], [2.4], [3.0]])
    figure = ObservedVsPredictedPanel().draw(fake_trainer(), None, {"predictions": predicted, "targets": observed})
    axes = figure.axes[0]
    np.testing.assert_allclose(axes.collections[0].get_offsets(), np.c_[observed.numpy(), predicted.numpy()])
    line = axes.lines[0]  # y = x over the joint range
    np.testing.assert_allclose(line.get_xdata(), [0.5, 3.5])
    np.testing.assert_allclose(line.get_ydata(), [0.5, 3.5])
    assert axes.get_xlabel() == "observed" and axes.get_ylabel() == "predicted"
