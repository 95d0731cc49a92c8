"""The learning-rate range test: Lightning's ``Tuner.lr_find`` over a config's own optimizer (docs/workflows.md).
The optimizer is injected as a callable, so there is no ``model.lr`` to update (Lightning #16787): the suggestion goes
into an override YAML (``write_override``) stacked after the run's configs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.tuner import Tuner

from lightning_models.checks import ConfigError, check_positive
from lightning_models.training.run import Parts, build
from lightning_models.training.run_folders import run_folder

LR_KEYS = ("model.init_args.optimizer.init_args.lr", "model.init_args.scheduler.init_args.max_lr")  # a one-cycle peak replaces the lr


@dataclass
class LearningRateSearch:
    """The suggested lr (None: too few finite points), the config's lr, the curve, its folder, the lr keys the config
    sets and ``doubts`` (a sentence per reason not to trust the suggestion)."""

    suggestion: float | None
    config_lr: float
    lrs: list[float]
    losses: list[float]
    folder: Path
    keys: list[str] = field(default_factory=list)
    doubts: list[str] = field(default_factory=list)


def find_learning_rate(*args: str | Path, min_lr: float = 1e-6, max_lr: float = 1.0, num_training: int = 100) -> LearningRateSearch:
    """The range test on what ``args`` (as for ``run``) build, one update per step; ConfigError where it cannot run."""
    check_positive("min_lr", min_lr)
    check_positive("max_lr", max_lr)
    check_positive("num_training", num_training, integer=True)
    if min_lr >= max_lr:
        raise ConfigError(f"min_lr={min_lr:g} is not below max_lr={max_lr:g}; the finder sweeps from min_lr up to max_lr.")
    # The steps bound the test, not the epochs; no validation: it reads the training loss.
    options = [*map(str, args), "--trainer.max_epochs=-1", f"--trainer.max_steps={num_training}",
               "--trainer.num_sanity_val_steps=0", f"--trainer.check_val_every_n_epoch={num_training + 1}"]
    parts = build(*options)
    if parts.trainer.fast_dev_run:  # Lightning skips the finder then
        raise ConfigError("lr_find: fast_dev_run runs a single batch and the finder needs num_training steps; drop fast_dev_run.")
    if (parts.model.hparams.get("updates_per_step") or 1) > 1:
        parts = build(*options, "--model.init_args.updates_per_step=1")
    finder = Tuner(parts.trainer).lr_find(parts.model, datamodule=parts.datamodule, min_lr=min_lr, max_lr=max_lr,
                                          num_training=num_training, update_attr=False)
    keys = [key for key in LR_KEYS if parts.config.get(key) is not None]
    found = LearningRateSearch(finder.suggestion(), config_lr(parts), list(finder.results["lr"]),
                               list(finder.results["loss"]), run_folder(parts.trainer), keys)
    found.doubts = doubts_about(found.lrs, found.losses, found.suggestion)
    save_curve(parts, finder, found)
    return found


def doubts_about(lrs: list[float], losses: list[float], suggestion: float | None) -> list[str]:
    """Why the suggestion may mislead: it lies on the start-up climb of the smoothed loss (its top is within the first
    third), or where the loss has fallen less than a quarter of the way from that top to its lowest; or the lowest
    point is among the last 5% (the loss still falls at ``max_lr``)."""
    points = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if suggestion is None or len(points) < 3:
        return []
    values = [loss for _, loss in points]
    top = max(range(max(3, len(values) // 3)), key=values.__getitem__)  # the start-up climb's top
    lowest = min(range(top, len(values)), key=values.__getitem__)
    at = min(range(len(points)), key=lambda index: abs(math.log(points[index][0] / suggestion)))
    found = []
    if suggestion <= points[top][0]:
        found.append(f"the suggestion {suggestion:.3g} lies on the curve's start-up climb (the smoothed loss peaks later, at lr "
                     f"{points[top][0]:.3g}): the running average is still warming up there")
    elif values[at] > values[lowest] + 0.75 * (values[top] - values[lowest]):
        found.append(f"the suggestion {suggestion:.3g} lies where the loss has fallen less than a quarter of the way from the "
                     f"start-up top to its lowest point (at lr {points[lowest][0]:.3g}): the descent has barely begun; an lr a "
                     "few times below the lowest point's is the usual choice")
    if lowest >= len(points) - max(2, len(points) // 20):
        found.append(f"the loss still falls at the top of the range (lowest at lr {points[lowest][0]:.3g}, the last tried "
                     f"{points[-1][0]:.3g}): raise --max_lr")
    return found


def config_lr(parts: Parts) -> float:
    """The lr the config's optimizer starts from."""
    optimizer = parts.model.make_optimizer([torch.nn.Parameter(torch.zeros(1))])
    return float(optimizer.param_groups[0]["lr"])


def save_curve(parts: Parts, finder: Any, found: LearningRateSearch) -> None:
    """``lr_find.png`` (Lightning's plot), ``lr_find.json`` and the TensorBoard image ``lr_find/loss_vs_lr``."""
    found.folder.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    finder.plot(suggest=True, ax=axes)
    axes.set_ylabel("training loss (smoothed)")
    axes.set_title(f"suggested lr {found.suggestion:.3g}" if found.suggestion else "no suggestion: too few finite points")
    figure.savefig(found.folder / "lr_find.png", dpi=100)
    curve = {"suggestion": found.suggestion, "config_lr": found.config_lr, "doubts": found.doubts, "lr": found.lrs,
             "loss": [loss if math.isfinite(loss) else None for loss in found.losses]}
    (found.folder / "lr_find.json").write_text(json.dumps(curve, indent=1) + "\n")
    for logger in parts.trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure("lr_find/loss_vs_lr", figure, global_step=0, close=True)
            logger.finalize("success")


def write_override(path: str | Path, keys: list[str], lr: float) -> None:
    """A YAML of only ``keys`` (dotted) set to ``lr`` (three significant digits)."""
    override: dict = {}
    for key in keys:
        *parents, last = key.split(".")
        node = override
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = float(f"{lr:.3g}")
    Path(path).write_text(yaml.safe_dump(override, sort_keys=False))
