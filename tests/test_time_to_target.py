"""TimeToTarget (lightning_models/callbacks/time_to_target.py): the seconds until a validation metric first reaches a
target, checked against a clock and the val/acc history recorded beside it; the penalty while it is not reached; stop;
the value reaches metrics.json through the validation of the best checkpoint."""

from __future__ import annotations

import time

import pytest
import pytorch_lightning as pl

from lightning_models import run
from lightning_models.callbacks import TimeToTarget
from lightning_models.checks import ConfigError
from tests.conftest import CONFIGS

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.callbacks=[]",
         "--trainer.max_epochs=8", "--data.init_args.batch_size=16", "--model.init_args.updates_per_step=1"]


class History(pl.Callback):
    """val/acc and the time at each validation of the fit, read after every other callback's hook."""

    def __init__(self) -> None:
        self.started, self.rows = None, []

    def on_train_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and self.started is not None and trainer.state.fn == "fit":
            self.rows.append((trainer.current_epoch + 1, float(trainer.callback_metrics["val/acc"]),
                              time.perf_counter() - self.started))


def fit(tmp_path, monkeypatch, **options):
    monkeypatch.chdir(tmp_path)
    clock, history = TimeToTarget(**options), History()
    result = run(CONFIGS / "iris_mlp_classifier.yaml", *QUIET, callbacks=[clock, history])
    return clock, history.rows, result


def test_the_seconds_until_val_acc_first_reaches_the_target_and_the_run_stops_there(tmp_path, monkeypatch):
    clock, rows, result = fit(tmp_path, monkeypatch, target=0.6, stop=True)
    first = next(index for index, (_, acc, _) in enumerate(rows) if acc >= 0.6)
    assert len(rows) == first + 1 < 8  # stopped at the first validation that reached 0.6
    _, _, at = rows[first]
    # measured from the same start, a moment earlier than the history's clock (which runs after it)
    assert 0 < clock.reached <= at and at - clock.reached < 0.5
    assert result.metrics["val"]["val/seconds_to_target"] == pytest.approx(clock.reached)


def test_a_target_never_reached_scores_the_full_time_plus_a_penalty_for_the_distance_left(tmp_path, monkeypatch):
    clock, rows, result = fit(tmp_path, monkeypatch, target=1.01, penalty=3.0)
    assert len(rows) == 8 and clock.reached is None
    last, best = rows[-1][2], max(acc for _, acc, _ in rows)
    factor = 1 + 3.0 * (1.01 - best)
    assert factor * (last - 0.5) < clock.value <= factor * last
    assert result.metrics["val"]["val/seconds_to_target"] == pytest.approx(clock.value)


def test_bad_settings_are_one_line():
    with pytest.raises(ConfigError, match="mode='up'; expected max or min"):
        TimeToTarget(mode="up")
