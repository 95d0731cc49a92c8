"""scripts/lr_find.py: Lightning's range test over a config's injected optimizer (tiny iris runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lightning_models import build
from tests.conftest import CONFIGS, ROOT
from tests.helpers import event_tags, run_script

IRIS = CONFIGS / "iris_mlp_classifier.yaml"
SCRIPT = ROOT / "scripts" / "lr_find.py"
STEPS = 40  # enough points past Lightning's 10 skipped ones for a steepest descent


def steepest_descent(lrs: list[float], losses: list[float | None], skip_begin: int = 10, skip_end: int = 1) -> float:
    """Lightning's documented rule, here in numpy: the lr where the smoothed loss falls fastest against the lr,
    among the finite points after the first ``skip_begin`` and before the last ``skip_end``."""
    lr = np.array(lrs[skip_begin:-skip_end], dtype=float)
    loss = np.array([math.nan if value is None else value for value in losses[skip_begin:-skip_end]], dtype=float)
    finite = np.isfinite(loss)
    return float(lr[finite][np.argmin(np.gradient(loss[finite], lr[finite]))])


def test_lr_find_saves_the_curve_and_suggests_its_steepest_descent(tmp_path: Path) -> None:
    written = tmp_path / "iris_lr.yaml"
    # --force: a curve this short is all start-up climb; the writing is under test here, the doubts below
    done = run_script(SCRIPT, "--config", str(IRIS), "--num_training", str(STEPS), "--write", str(written), "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line, command = done.stdout.strip().splitlines()[-2:]
    folder = tmp_path / "lightning_logs" / "iris_mlp_classifier" / "version_0"
    assert (folder / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "lr_find/loss_vs_lr" in event_tags(folder)["images"]

    curve = json.loads((folder / "lr_find.json").read_text())
    assert len(curve["lr"]) == len(curve["loss"]) == STEPS
    # One optimizer update per recorded point: the lr grows by the same factor every step. With the config's
    # 50 updates per step the finder's schedule would advance 50 points per recorded one.
    ratios = np.array(curve["lr"][2:]) / np.array(curve["lr"][1:-1])
    assert np.allclose(ratios, (1.0 / 1e-6) ** (1 / STEPS))
    expected = steepest_descent(curve["lr"], curve["loss"])
    assert curve["suggestion"] == pytest.approx(expected, rel=1e-9)
    assert line.startswith(f"suggested lr {expected:.3g} (config: 0.003)")
    assert curve["config_lr"] == 0.003

    # The override holds the lr alone; stacked after the config it sets the optimizer's start, the rest stays.
    assert yaml.safe_load(written.read_text()) == {"model": {"init_args": {"optimizer": {"init_args": {"lr": float(f"{expected:.3g}")}}}}}
    assert command == f"train with it: python scripts/train.py fit --config {IRIS} --config {written}"
    stacked, alone = build(IRIS, "--config", written).config, build(IRIS).config
    stacked.config = alone.config
    assert stacked.model.init_args.optimizer.init_args.lr == pytest.approx(expected, rel=5e-3)
    stacked.model.init_args.optimizer.init_args.lr = alone.model.init_args.optimizer.init_args.lr
    assert stacked.as_dict() == alone.as_dict()


def test_lr_find_writes_a_one_cycle_peak_with_the_lr(tmp_path: Path) -> None:
    """Under OneCycleLR the optimizer's lr is replaced by the schedule's: --write sets max_lr to the suggestion too."""
    from lightning_models.workflows.lr_find import LR_KEYS, write_override

    write_override(tmp_path / "lr.yaml", list(LR_KEYS), 0.001234)
    parts = build(CONFIGS / "fashion_cnn.yaml", "--config", tmp_path / "lr.yaml")
    assert parts.model.make_scheduler.keywords["max_lr"] == 0.00123
    assert parts.model.make_optimizer([torch.nn.Parameter(torch.zeros(1))]).param_groups[0]["lr"] == 0.00123
    assert parts.config.model.init_args.optimizer.init_args.weight_decay == 0.0005  # the rest of the optimizer stays


@pytest.mark.parametrize("options, says", [
    ([str(CONFIGS / "presets" / "debug.yaml")], "fast_dev_run"),
    (["--min_lr", "0.1", "--max_lr", "0.01"], "min_lr=0.1 is not below max_lr=0.01"),
])
def test_lr_find_refuses_in_one_line(options: list[str], says: str, tmp_path: Path) -> None:
    args = ["--config", str(IRIS)] + (["--config", *options] if options[0].endswith(".yaml") else options)
    done = run_script(SCRIPT, *args, cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("lightning_logs/*/*/lr_find.png"))


def test_lr_find_writes_an_override_that_keeps_the_searchs_presets_and_options(tmp_path: Path) -> None:
    written = tmp_path / "iris_lr.yaml"
    preset = CONFIGS / "presets" / "overfit.yaml"
    done = run_script(SCRIPT, f"--config={IRIS}", "--config", str(preset), "--trainer.max_epochs=7", "--num_training", "20",
                      "--write", str(written), "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    suggestion = json.loads(next(tmp_path.glob("lightning_logs/*/version_0/lr_find.json")).read_text())["suggestion"]
    command = done.stdout.strip().splitlines()[-1]
    stacked = f"--config={IRIS} --config {preset} --trainer.max_epochs=7 --config {written}"
    assert command == f"train with it: python scripts/train.py fit {stacked}"
    config = build(IRIS, "--config", preset, "--trainer.max_epochs=7", "--config", written).config  # the printed command's config
    assert config.model.init_args.optimizer.init_args.lr == pytest.approx(suggestion, rel=5e-3)
    assert config.trainer.max_epochs == 7 and config.trainer.overfit_batches == 4  # the preset's


def curve(losses: list[float]) -> tuple[list[float], list[float]]:
    return list(np.geomspace(1e-6, 1.0, len(losses))), losses


def test_doubts_name_a_start_up_suggestion_and_a_loss_still_falling_at_max_lr():
    from lightning_models.workflows.lr_find import doubts_about

    climb_then_fall = [0.5 + 0.05 * i for i in range(10)] + [1.0 - 0.04 * i for i in range(20)]  # lowest at the end
    lrs, losses = curve(climb_then_fall)
    on_climb, on_fall = lrs[4], lrs[20]
    assert [d.split(" (")[0] for d in doubts_about(lrs, losses, on_climb)] == [
        f"the suggestion {on_climb:.3g} lies on the curve's start-up climb", "the loss still falls at the top of the range"]
    assert [d.split(" (")[0] for d in doubts_about(lrs, losses, on_fall)] == ["the loss still falls at the top of the range"]
    u_shape = climb_then_fall[:25] + [0.2, 0.3, 0.6, 1.2, float("nan")]  # bottoms out, then diverges: a range that found its top
    lrs, losses = curve(u_shape)
    assert doubts_about(lrs, losses, lrs[20]) == []  # halfway down from the climb's top (0.95) to the lowest (0.2)
    assert doubts_about(lrs, losses, lrs[9]) != []  # the climb's top, the divergence after the lowest point does not count
    barely = doubts_about(lrs, losses, lrs[11])  # 0.92: 4% of the way down, the steepest point of a settling average
    assert [d.split(" (")[0] for d in barely] == [f"the suggestion {lrs[11]:.3g} lies where the loss has fallen less than "
                                                  "a quarter of the way from the start-up top to its lowest point"]


def test_write_refuses_a_doubtful_suggestion_without_force(tmp_path: Path) -> None:
    """Iris over the default range: the loss still falls at lr 1, so --write refuses in one line naming --force."""
    written = tmp_path / "iris_lr.yaml"
    done = run_script(SCRIPT, "--config", str(IRIS), "--write", str(written), cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert "the loss still falls at the top of the range" in errors[0] and "--force" in errors[0]
    assert not written.exists()
    curve_file = json.loads((tmp_path / "lightning_logs" / "iris_mlp_classifier" / "version_0" / "lr_find.json").read_text())
    losses = [loss for loss in curve_file["loss"] if loss is not None]
    assert losses.index(min(losses)) >= len(losses) - 5  # what the doubt says, read off the saved curve
    assert any("raise --max_lr" in doubt for doubt in curve_file["doubts"])
