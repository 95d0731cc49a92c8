"""The learning-rate range test: Lightning's ``Tuner.lr_find`` over any experiment config's own optimizer.

    from lightning_models.workflows.lr_find import find_learning_rate
    found = find_learning_rate("configs/iris_mlp_classifier.yaml")
    found.suggestion, found.config_lr, found.folder  # lr_find.png and lr_find.json are in found.folder
    found.doubts  # why the suggestion may mislead: on the start-up climb, a descent barely begun, a loss still falling at max_lr

The finder trains from ``min_lr`` to ``max_lr`` over ``num_training`` optimizer steps and suggests the lr where the
smoothed loss falls fastest (``suggestion()``). The configs inject the optimizer as a callable (LightningCLI's
``OptimizerCallable``), so there is no ``model.lr`` for Lightning to update (Lightning issue #16787): the finder
runs with ``update_attr=False`` and the suggestion goes back into a config (``write_config``) or an option.
"""

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

LR_KEYS = (("model", "init_args", "optimizer", "init_args", "lr"),  # the optimizer's lr
           ("model", "init_args", "scheduler", "init_args", "max_lr"))  # a one-cycle peak replaces it: set both


@dataclass
class LearningRateSearch:
    """What ``find_learning_rate`` found: the suggested lr (None: the curve was too short), the config's own lr,
    the recorded curve (lr and smoothed loss per step, as Lightning records them), the run folder, and ``doubts``:
    one sentence per reason not to trust the suggestion (``doubts_about``; empty: none)."""

    suggestion: float | None
    config_lr: float
    lrs: list[float]
    losses: list[float]
    folder: Path
    doubts: list[str] = field(default_factory=list)


def find_learning_rate(*args: str | Path, min_lr: float = 1e-6, max_lr: float = 1.0, num_training: int = 100) -> LearningRateSearch:
    """Run the range test on the model and data that ``args`` (config files and options, as for ``run``) build.

    Full-batch configs run ``updates_per_step`` updates per Lightning step, and each of them would step the finder's
    schedule (``TaskModule.optimizer_step``) while only the last one's loss is recorded: the finder runs with one
    update per step instead, so every point of the curve is one update at one lr. Raises ``ConfigError`` where the
    test cannot run (``fast_dev_run``; bad bounds).
    """
    check_positive("min_lr", min_lr)
    check_positive("max_lr", max_lr)
    check_positive("num_training", num_training, integer=True)
    if min_lr >= max_lr:
        raise ConfigError(f"min_lr={min_lr:g} is not below max_lr={max_lr:g}; the finder sweeps from min_lr up to max_lr.")
    # An epoch may be shorter than the test (a full batch is one step): the steps bound it, not the epochs. The test
    # reads the training loss only: no validation, which the full-batch configs would otherwise run every step.
    options = [*map(str, args), "--trainer.max_epochs=-1", f"--trainer.max_steps={num_training}",
               "--trainer.num_sanity_val_steps=0", f"--trainer.check_val_every_n_epoch={num_training + 1}"]
    parts = build(*options)
    if parts.trainer.fast_dev_run:  # Lightning skips the finder then
        raise ConfigError("lr_find: fast_dev_run runs a single batch and the finder needs num_training steps; drop fast_dev_run.")
    if (parts.model.hparams.get("updates_per_step") or 1) > 1:
        parts = build(*options, "--model.init_args.updates_per_step=1")
    finder = Tuner(parts.trainer).lr_find(parts.model, datamodule=parts.datamodule, min_lr=min_lr, max_lr=max_lr,
                                          num_training=num_training, update_attr=False)
    found = LearningRateSearch(finder.suggestion(), config_lr(parts), list(finder.results["lr"]),
                               list(finder.results["loss"]), run_folder(parts.trainer))
    found.doubts = doubts_about(found.lrs, found.losses, found.suggestion)
    save_curve(parts, finder, found)
    return found


def doubts_about(lrs: list[float], losses: list[float], suggestion: float | None) -> list[str]:
    """Why the suggestion may mislead, one sentence each. The smoothed loss starts low and climbs while Lightning's
    running average warms up, to a top within the first third of the range: a steepest descent up to that top is a
    wiggle of the start-up part, not the lr taking effect, and so is one where the loss has fallen less than a quarter
    of the way from that top to the lowest point after it. A lowest point among the last 5% of points means the loss
    still falls at ``max_lr``: the range found no upper limit, and the steepest point of a curve cut short says little."""
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
    """The lr the config's optimizer starts from (the optimizer built on a stand-in parameter)."""
    optimizer = parts.model.make_optimizer([torch.nn.Parameter(torch.zeros(1))])
    return float(optimizer.param_groups[0]["lr"])


def save_curve(parts: Parts, finder: Any, found: LearningRateSearch) -> None:
    """``lr_find.png`` (Lightning's own plot, the suggestion in red) and ``lr_find.json`` into the run folder, and the
    plot as the TensorBoard image ``lr_find/loss_vs_lr``."""
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


def write_config(source: str | Path, target: str | Path, lr: float) -> list[str]:
    """Copy the YAML ``source`` to ``target`` with its optimizer's ``lr`` (and a scheduler's ``max_lr``) set to ``lr``;
    every other byte, comments included, stays. Returns the keys changed. (PyYAML's node offsets, not ruamel.yaml's
    round trip: that re-emits the whole document, and its quoting, spacing and flow styles would show in a diff.)"""
    text = Path(source).read_text()
    root = yaml.compose(text)
    edits = [(node, ".".join(path)) for path in LR_KEYS if (node := scalar_at(root, path)) is not None]
    if not edits or edits[0][1] != ".".join(LR_KEYS[0]):
        raise ConfigError(f"{source} sets no {'.'.join(LR_KEYS[0])}; --write copies the config with that value changed.")
    for node, _ in sorted(edits, key=lambda edit: -edit[0].start_mark.index):  # from the end: earlier offsets hold
        text = text[: node.start_mark.index] + yaml_float(lr) + text[node.end_mark.index :]
    Path(target).write_text(text)
    return [key for _, key in edits]


def sets_lr(path: str | Path) -> bool:
    """Whether the YAML file ``path`` sets the optimizer's lr (an experiment config does, a preset does not)."""
    return scalar_at(yaml.compose(Path(path).read_text()), LR_KEYS[0]) is not None


def yaml_float(value: float) -> str:
    """Three significant digits, always with a dot: YAML 1.1 (PyYAML) reads ``1e-05`` as a string, ``1.0e-05`` as a float."""
    mantissa, e, exponent = f"{value:.3g}".partition("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}{e}{exponent}"


def scalar_at(node: yaml.Node | None, path: tuple[str, ...]) -> yaml.ScalarNode | None:
    """The scalar node at ``path`` in a composed YAML document (whose character offsets it carries), or None."""
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((value for name, value in node.value if name.value == key), None)
    return node if isinstance(node, yaml.ScalarNode) else None
