"""Panels by content: each panel's ``draw`` on planted rows, checking the numbers it draws."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, recall_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datamodules import PlaneDataModule
from datamodules.synthetic import describe_polynomial
from lightning_models import ClassificationModule
from lightning_models.callbacks import ConfusionMatrixPanel, DecisionSurfacePanel, ObservedVsPredictedPanel, PerClassAccuracyPanel
from lightning_models.nets import MLP
from tests.conftest import CONFIGS, build_from_config


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


def test_per_class_accuracy_bars_are_each_class_recall_by_name():
    generator = torch.Generator().manual_seed(1)
    targets = torch.cat([torch.randint(0, 4, (150,), generator=generator), torch.tensor([4])])  # class 5 once
    scores = torch.randn(151, 6, generator=generator)
    scores[torch.arange(151)[::2], targets[::2]] += 5  # half the rows surely right
    names = ["a", "b", "c", "d", "e", "f"]  # "f": no rows, drawn as 0
    figure = PerClassAccuracyPanel().draw(fake_trainer(names), None, {"predictions": scores, "targets": targets})
    axes = figure.axes[0]
    heights = [bar.get_height() for bar in axes.patches]
    expected = recall_score(targets.numpy(), scores.argmax(1).numpy(), labels=range(6), average=None, zero_division=0)
    np.testing.assert_allclose(heights, expected, atol=1e-6)
    assert [round(bar.get_x() + bar.get_width() / 2) for bar in axes.patches] == list(range(6))
    assert [label.get_text() for label in axes.get_xticklabels()] == names


def test_decision_surface_draws_the_models_probability_of_class_1():
    """A linear model with planted weights on standardised XOR coordinates: P(class 1) recomputed in numpy."""
    data = PlaneDataModule(dataset="xor", standardize=True)
    data.setup()
    module = ClassificationModule(2, 2, net=partial(MLP, hidden_sizes=[]))
    layer = next(m for m in module.net.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0], [1.5, 0.5]]))
        layer.bias.copy_(torch.tensor([0.2, -0.3]))
    points = np.array([[0.0, 0.0], [3.0, -2.0], [-4.0, 1.0], [6.0, 6.0]])
    z = (points - data.mean.numpy()) / data.std.numpy()
    margin = z @ np.array([1.0, 1.5]) - 0.5  # class-1 logit minus class-0 logit
    np.testing.assert_allclose(DecisionSurfacePanel.probability(module, data, torch.tensor(points, dtype=torch.float32)),
                               1 / (1 + np.exp(-margin)), rtol=1e-5)

    trainer = SimpleNamespace(datamodule=data, state=SimpleNamespace(stage="test"), global_step=3)
    panel = DecisionSurfacePanel(extent=6.0, resolution=11)
    axes = panel.draw(trainer, module, {}).axes[0]
    grid = np.stack(np.meshgrid(np.linspace(-6, 6, 11), np.linspace(-6, 6, 11)), -1).reshape(-1, 2)
    on_grid = 1 / (1 + np.exp(-(((grid - data.mean.numpy()) / data.std.numpy()) @ np.array([1.0, 1.5]) - 0.5)))
    contour = next(child for child in axes.get_children() if hasattr(child, "zmax"))
    assert (contour.zmin, contour.zmax) == pytest.approx((on_grid.min(), on_grid.max()), rel=1e-5)
    test_points, test_labels = data.plane_points("test")
    for label, collection in zip((0, 1), axes.collections[-2:]):  # the test points over the surface, by class
        np.testing.assert_allclose(collection.get_offsets(), test_points[test_labels == label].numpy())


def test_polynomial_text_shows_the_learned_weights_and_the_target(in_tmp):
    model, data, trainer = build_from_config(CONFIGS / "polynomial_regression.yaml", "--trainer.max_epochs=1",
                                             "--data.init_args.steps_per_epoch=20", "--trainer.enable_progress_bar=false")
    trainer.fit(model, datamodule=data)
    run = Path(trainer.log_dir)
    accumulator = EventAccumulator(str(run), size_guidance={"tensors": 0})
    accumulator.Reload()
    text = accumulator.Tensors("polynomial/text_summary")[-1].tensor_proto.string_val[0].decode()
    learned, target = (line.split(":", 1)[1] for line in text.split("  \n"))

    def coefficients(line: str) -> list[float]:  # "y = +6.19 x^1 -4.80 x^2 ... +4.40": powers 1..4, then the bias
        terms = line.replace("y =", "").split()
        assert [term for term in terms if term.startswith("x^")] == ["x^1", "x^2", "x^3", "x^4"]
        return [float(term) for term in terms if not term.startswith("x^")]

    layer = next(m for m in model.net.modules() if isinstance(m, torch.nn.Linear))
    np.testing.assert_allclose(coefficients(learned), [*layer.weight.detach().flatten().tolist(), layer.bias.item()],
                               atol=0.005 + 1e-9)
    np.testing.assert_allclose(coefficients(target), [*data.weight.flatten().tolist(), data.bias.item()], atol=0.005 + 1e-9)
    assert describe_polynomial(torch.tensor([6.19, -4.8, 7.71, -2.04]), torch.tensor([4.4])) == \
        "y = +6.19 x^1 -4.80 x^2 +7.71 x^3 -2.04 x^4 +4.40"  # text 003's poly_desc output
