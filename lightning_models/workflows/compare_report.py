"""What a comparison may say: the verdict per metric (only on the same rows), and the report (markdown, CSV, a PNG
per side's metrics, the validation curves). It reads ``compare``'s objects by their fields and imports nothing of it."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from scipy import stats

LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "error")
HIGHER_IS_BETTER = ("acc", "f1", "r2", "auroc", "precision", "recall")
# The data keys that decide the test rows, across the datamodules; validation is drawn from what test leaves.
TEST_ROWS = tuple(f"data.{key}" for key in (
    "class_path", "init_args.path", "init_args.root", "init_args.dataset", "init_args.function", "init_args.points_per_class",
    "init_args.target", "init_args.missing", "init_args.split_column", "init_args.partition", "init_args.test_fraction",
    "init_args.seed"))
VAL_ROWS = (*TEST_ROWS, "data.init_args.fold", "data.init_args.folds", "data.init_args.val_fraction", "data.init_args.val_size")
UNUSED = {True: ("data.init_args.val_fraction", "data.init_args.val_size"), False: ("data.init_args.folds",)}  # by "has a fold"
ROWS = {"test": "test", "val": "validation", "train": "training"}
Side = Any  # compare.Side
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
KINDS = {"better": "better", "worse": "worse", "higher": "higher", "lower": "lower", "no detectable difference":
         "no detectable difference", "too few runs": "too few runs for an interval", "not comparable": "not comparable",
         "fit": "fit (no verdict)", "only in": "only on one side"}  # a verdict's head -> its group in the summary
EXPLAINED = ("Mean ± sample std (n) per side; the difference with its 95% interval: a paired t-test on the per-seed "
             "differences when both sides hold the same seeds (and folds), else Welch's t-test. better/worse: the interval "
             "excludes 0 (loss, mse, error: lower is better; acc, f1, r2: higher). fit: a train/* metric, no verdict. "
             "not comparable: measured on other rows, or another loss.")


def direction(metric: str) -> str:
    """``higher`` or ``lower`` (is better) from the metric's name, ``""`` when the name does not say."""
    name = metric.rsplit("/", 1)[-1].lower()
    return "lower" if name in LOWER_IS_BETTER else "higher" if name in HIGHER_IS_BETTER else ""


def rows_of(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The keys that decide the rows of ``stage`` and their values, less those the datamodule leaves unused."""
    unused = UNUSED[config.get("data.init_args.fold") is not None]
    return {key: config.get(key) for key in (TEST_ROWS if stage == "test" else VAL_ROWS) if key not in unused}


def text(values: set[str]) -> str:
    return ", ".join(value.strip('"') for value in sorted(values, key=lambda value: (len(value), value)))


def rows_differ(a: Side, b: Side, stage: str) -> str | None:
    """Why ``b`` measured ``stage`` on other rows than ``a`` (the sets of their runs' row settings differ), or None."""
    for one in (*a.runs, *b.runs):
        if not one.config:
            return f"{one.folder} has no config.yaml to tell its rows"
    rows = [[rows_of(run.config, stage) for run in side.runs] for side in (a, b)]
    if {json.dumps(row, sort_keys=True) for row in rows[0]} == {json.dumps(row, sort_keys=True) for row in rows[1]}:
        return None
    keys = dict.fromkeys(key for side in rows for row in side for key in row)
    per_key = {key: [{json.dumps(row[key]) for row in side if key in row} for side in rows] for key in keys}
    named = [f"{key}: {text(values[0])} in {a.label}, {text(values[1])} in {b.label}" for key, values in per_key.items()
             if all(values) and values[0] != values[1]]
    varying = [key for key, values in per_key.items() if len(values[0] | values[1]) > 1]
    return f"the {ROWS[stage]} rows differ ({'; '.join(named) or 'the same values of ' + ', '.join(varying) + ', combined otherwise'})"


def judge(metric: str, a: Side, b: Side, differing: dict[str, list[str]], diff: float, low: float, high: float, n: int) -> str:
    """"not comparable: why" (other rows, another loss), "fit" for train/*, else better/worse/no detectable difference."""
    stage, name = metric.split("/", 1) if "/" in metric else ("", metric)
    reasons = [rows_differ(a, b, stage) if stage in ROWS else None,
               "model.init_args.loss differs" if name == "loss" and "model.init_args.loss" in differing else None]
    if found := [reason for reason in reasons if reason]:
        return "not comparable: " + "; ".join(found)
    if stage == "train":
        return "fit"  # fitting the training rows harder is no improvement
    if math.isnan(low):
        return f"too few runs (n={n}) for an interval"
    if low <= 0 <= high:
        return f"no detectable difference at n={n}"
    if not (better := direction(metric)):
        return "higher" if diff > 0 else "lower"
    return "better" if (diff > 0) == (better == "higher") else "worse"


def number(value: float, signed: bool = False) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.4g}" if signed else f"{value:.4g}"


def markdown(comparison: Any) -> str:
    sides = comparison.sides
    lines = ["# Comparison", "", "| side | given as | runs | seeds |", "| --- | --- | --- | --- |"]
    for side in sides:
        seeds = sorted({str(run.key[0]) for run in side.runs}, key=lambda s: (len(s), s))
        lines.append(f"| {side.label} | `{side.source}` | {len(side.runs)} | {', '.join(seeds)} |")
    lines += ["", "## Config keys that differ", ""]
    if comparison.differing:
        lines += ["| key | " + " | ".join(side.label for side in sides) + " |", "|" + " --- |" * (len(sides) + 1)]
        lines += [f"| `{key}` | " + " | ".join(values) + " |" for key, values in comparison.differing.items()]
    else:
        lines.append("None: the sides' configs agree (beyond seeds, folds and where they log).")
    lines += ["", "## Metrics", "", EXPLAINED, "", "| metric | better | A | B | B - A | 95% interval | p | test | verdict |",
              "|" + " --- |" * 9]
    for r in comparison.rows:
        cells = [f"{number(m)} ± {number(s)} ({n})" if n else "n/a (0)" for m, s, n in zip(r.means, r.stds, r.counts)]
        lines.append(f"| {r.metric} | {r.direction or '?'} | {r.baseline}: {cells[0]} | {r.label}: {cells[1]} | "
                     f"{number(r.difference, True)} | [{number(r.low, True)}, {number(r.high, True)}] | {number(r.p_value)} | "
                     f"{r.test} | {r.verdict} |")
    return "\n".join([*lines, "", "## Summary", "", *summary(comparison)]) + "\n"


def summary(comparison: Any) -> list[str]:
    """One line per side against the first: its metrics grouped by verdict, the wins first."""
    lines = []
    for side in comparison.sides[1:]:
        kinds: dict[str, list[str]] = {}
        for r in (row for row in comparison.rows if row.label == side.label):
            head = next((head for head in KINDS if r.verdict.startswith(head)), r.verdict)
            shown = f"{r.metric} ({r.verdict.removeprefix('only in ')})" if head == "only in" else r.metric
            kinds.setdefault(KINDS.get(head, head), []).append(shown)
        parts = [f"{name}{':' if name == 'only on one side' else ' on'} {', '.join(kinds[name])}" for name in KINDS.values()
                 if name in kinds]
        lines.append(f"- {side.label} against {comparison.sides[0].label}: {'; '.join(parts) or 'no metrics'}.")
    return lines


def csv_text(comparison: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "better", "side_a", "side_b", "mean_a", "std_a", "n_a", "mean_b", "std_b", "n_b",
                     "difference_b_minus_a", "low_95", "high_95", "p_value", "test", "verdict"])
    for r in comparison.rows:
        writer.writerow([r.metric, r.direction, r.baseline, r.label, r.means[0], r.stds[0], r.counts[0], r.means[1],
                         r.stds[1], r.counts[1], r.difference, r.low, r.high, r.p_value, r.test, r.verdict])
    return out.getvalue()


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% t interval (the mean twice for one value or no spread)."""
    mean = statistics.fmean(values)
    if len(values) < 2 or statistics.pstdev(values) == 0:
        return mean, mean, mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = stats.ttest_1samp(values, mean).confidence_interval(0.95)
    return mean, float(interval.low), float(interval.high)


def plot_metrics(comparison: Any, path: Path) -> Path:
    """One panel per test and val metric: every run as a dot, each side's mean with its 95% interval."""
    metrics = list(dict.fromkeys(row.metric for row in comparison.rows if row.metric.startswith(("test/", "val/"))))
    columns = min(3, max(1, len(metrics)))
    rows = max(1, -(-len(metrics) // columns))
    figure = Figure(figsize=(4 * columns, 3 * rows), layout="constrained")
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        for position, side in enumerate(comparison.sides):
            if not (values := side.values(metric)):
                continue
            colour = COLOURS[position % len(COLOURS)]
            axes.scatter([position + 0.15 * (i / max(1, len(values) - 1) - 0.5) for i in range(len(values))], values, s=12,
                         color=colour, alpha=0.5)
            mean, low, high = mean_interval(values)
            axes.errorbar([position + 0.3], [mean], yerr=[[mean - low], [high - mean]], fmt="o", color=colour, capsize=4)
        axes.set_xticks(range(len(comparison.sides)), [side.label for side in comparison.sides])
        axes.set_title(metric)
    figure.suptitle("each run (dots), mean and 95% interval per side")
    figure.savefig(path, dpi=90)
    return path


def scalar_curves(folder: Path) -> dict[str, dict[int, float]]:
    """The ``val/*`` scalars of a run's TensorBoard event files: tag -> {step: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, dict[int, float]] = {}
    for events in sorted(folder.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            if tag.startswith("val/"):
                curves.setdefault(tag, {}).update({event.step: event.value for event in accumulator.Scalars(tag)})
    return curves


def plot_curves(sides: list[Any], path: Path) -> Path | None:
    """The val/ curves, every run thin and each side's mean thick; None when no run logged any."""
    per_side = [[scalar_curves(run.folder) for run in side.runs] for side in sides]
    tags = sorted({tag for curves in per_side for run in curves for tag in run})
    if not tags:
        return None
    figure = Figure(figsize=(5 * len(tags), 3.5), layout="constrained")
    for index, tag in enumerate(tags):
        axes = figure.add_subplot(1, len(tags), index + 1)
        for position, (side, runs) in enumerate(zip(sides, per_side)):
            colour = COLOURS[position % len(COLOURS)]
            found = [run[tag] for run in runs if tag in run]
            for curve in found:
                axes.plot(list(curve), list(curve.values()), color=colour, alpha=0.25, linewidth=0.8)
            if steps := sorted(set.intersection(*(set(curve) for curve in found))) if found else []:
                axes.plot(steps, [statistics.fmean(curve[step] for curve in found) for step in steps], color=colour,
                          linewidth=2, label=f"{side.label} (mean of {len(found)})")
        axes.set_title(tag)
        axes.set_xlabel("step")
        axes.legend()
    figure.savefig(path, dpi=90)
    return path
