"""What a comparison may say of one metric (docs/compare.md): better or worse by the metric's direction, "fit" for
train/* (fitting the training rows harder is no improvement), and "not comparable" where the sides measured it on
other rows or with another loss. The rows are read from each run's resolved ``config.yaml`` (a cross-validation's
fold runs hold their fold there). It reads sides and runs by their fields and imports nothing of ``compare``, which
calls it: the layers point one way."""

from __future__ import annotations

import json
import math
from typing import Any

Side = Any  # lightning_models.workflows.compare.Side

LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "error")
HIGHER_IS_BETTER = ("acc", "f1", "r2", "auroc", "precision", "recall")
# The data keys that decide which rows the test split holds, across the datamodules: the data itself, the split of
# it and the rows a missing cell or another target leaves out.
TEST_ROWS = tuple(f"data.{key}" for key in (
    "class_path", "init_args.path", "init_args.root", "init_args.dataset", "init_args.function", "init_args.points_per_class",
    "init_args.target", "init_args.missing", "init_args.split_column", "init_args.partition", "init_args.test_fraction",
    "init_args.seed"))
# The validation rows are drawn from what the test split leaves; the training rows are what validation leaves.
VAL_ROWS = (*TEST_ROWS, "data.init_args.fold", "data.init_args.folds", "data.init_args.val_fraction", "data.init_args.val_size")
# A fold replaces the validation draw (val_fraction, val_size unused); without one, the number of folds is unused.
UNUSED = {True: ("data.init_args.val_fraction", "data.init_args.val_size"), False: ("data.init_args.folds",)}
ROWS = {"test": "test", "val": "validation", "train": "training"}
CHANGES_LOSS = ("model.init_args.loss",)  # another loss function: */loss are numbers of different things


def direction(metric: str) -> str:
    """``higher`` or ``lower`` (is better) from the metric's name after its stage, ``""`` when the name does not say."""
    name = metric.rsplit("/", 1)[-1].lower()
    return "lower" if name in LOWER_IS_BETTER else "higher" if name in HIGHER_IS_BETTER else ""


def rows_of(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The keys (dotted, as in ``config``) that decide the rows of ``stage``, and their values; a key the datamodule
    leaves unused (``val_fraction`` in a fold) is left out."""
    unused = UNUSED[config.get("data.init_args.fold") is not None]
    return {key: config.get(key) for key in (TEST_ROWS if stage == "test" else VAL_ROWS) if key not in unused}


def text(values: set[str]) -> str:
    return ", ".join(value.strip('"') for value in sorted(values, key=lambda value: (len(value), value)))


def rows_differ(a: Side, b: Side, stage: str) -> str | None:
    """Why side ``b`` measured ``stage``'s metrics on other rows than ``a`` (one line naming the keys), or None. Each
    side's runs give a set of row settings (several seeds of one split are one; five folds are five); the sides
    measure the same rows when the sets agree."""
    for side in (a, b):
        for run in side.runs:
            if not run.config:
                return f"{run.folder} has no config.yaml to tell its rows"
    rows = [[rows_of(run.config, stage) for run in side.runs] for side in (a, b)]
    if {json.dumps(row, sort_keys=True) for row in rows[0]} == {json.dumps(row, sort_keys=True) for row in rows[1]}:
        return None
    keys = dict.fromkeys(key for side in rows for row in side for key in row)
    per_key = {key: [{json.dumps(row[key]) for row in side if key in row} for side in rows] for key in keys}
    named = [f"{key}: {text(values[0])} in {a.label}, {text(values[1])} in {b.label}" for key, values in per_key.items()
             if all(values) and values[0] != values[1]]
    varying = [key for key, values in per_key.items() if len(values[0] | values[1]) > 1]
    return f"the {ROWS[stage]} rows differ ({'; '.join(named) or 'the same values of ' + ', '.join(varying) + ', combined otherwise'})"


def verdict(diff: float, low: float, high: float, better: str, n: int) -> str:
    if math.isnan(low):
        return f"too few runs (n={n}) for an interval"
    if low <= 0 <= high:
        return f"no detectable difference at n={n}"
    if not better:
        return "higher" if diff > 0 else "lower"
    return "better" if (diff > 0) == (better == "higher") else "worse"


def judge(metric: str, a: Side, b: Side, differing: dict[str, list[str]], interval: tuple[float, float, float], n: int) -> str:
    """The verdict on ``metric`` of ``b`` against ``a`` from ``(difference, low, high)``: "not comparable: why" where
    the rows or the loss differ, "fit" for train/*, else ``verdict``."""
    stage, name = metric.split("/", 1) if "/" in metric else ("", metric)
    reasons = [rows_differ(a, b, stage) if stage in ROWS else None,
               *(f"{key} differs" for key in CHANGES_LOSS if name == "loss" and key in differing)]
    if found := [reason for reason in reasons if reason]:
        return "not comparable: " + "; ".join(found)
    return "fit" if stage == "train" else verdict(*interval, direction(metric), n)
