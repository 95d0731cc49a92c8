"""What TensorBoard's curves show is what happened: one x for every scalar and panel of an epoch (the global step), the
curve of val/* ending at the last epoch's validation, the best checkpoint's numbers on final_val/* of their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_models import run
from tests.conftest import CONFIGS
from tests.helpers import CLIMBING_OPTIONS as OPTIONS
from tests.helpers import FitValidations


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, FitValidations, EventAccumulator]:
    cwd = tmp_path_factory.mktemp("axis")
    recorder = FitValidations()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = run(CONFIGS / "iris_mlp_classifier.yaml", *OPTIONS, callbacks=[recorder])
    return result, recorder, events(result.folder)


def points(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_the_val_curve_ends_at_the_last_epoch_and_the_best_checkpoint_has_final_val_tags(fitted):
    result, recorder, accumulator = fitted
    losses = [loss for _, _, loss in recorder.seen]
    best = min(losses)
    assert len(losses) == 3 and losses[-1] > best  # the run this test needs: the best checkpoint is not the last epoch
    assert points(accumulator, "val/loss") == [(step, pytest.approx(loss)) for step, _, loss in recorder.seen]
    final_step = result.record["global_step"]
    assert points(accumulator, "final_val/loss") == [(final_step, pytest.approx(best))]
    assert result.metrics["val"]["val/loss"] == pytest.approx(best)  # metrics.json: the best checkpoint's
    assert points(accumulator, "test/loss") == [(final_step, pytest.approx(result.metrics["test"]["test/loss"]))]
    assert points(accumulator, "final_test/loss") == points(accumulator, "test/loss")
    assert set(result.metrics["val"]) == {"val/loss", "val/acc", "val/f1"}  # no step or epoch among the metrics


def test_every_scalar_and_panel_of_an_epoch_shares_its_global_step(fitted):
    result, recorder, accumulator = fitted
    steps = [step for step, _, _ in recorder.seen]
    assert steps == [4, 8, 12]  # 60 training rows in batches of 16: four steps an epoch
    for tag in ("train/loss", "train/acc", "val/acc", "val/f1"):
        assert [step for step, _ in points(accumulator, tag)] == steps, tag
    assert [image.step for image in accumulator.Images("val/confusion_matrix")] == steps
    assert [image.step for image in accumulator.Images("test/confusion_matrix")] == [steps[-1]]
    # Lightning's epoch scalar, at the same steps (after the training epoch and after its validation), never one past
    epochs = sorted(points(accumulator, "epoch"))
    assert epochs == sorted((step, float(epoch)) for step, epoch, _ in recorder.seen for _ in range(2))
    assert max(value for _, value in epochs) == result.record["epochs"] - 1 == 2
