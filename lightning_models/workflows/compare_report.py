"""The report of a comparison: its markdown table, each metric per side with its interval (a PNG), and the
validation curves overlaid (a PNG). It reads a ``compare.Comparison`` and its sides by their fields and imports
nothing of ``compare``, which calls it: the layers point one way."""

from __future__ import annotations

import csv
import io
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from scipy import stats

Comparison = Any  # lightning_models.workflows.compare.Comparison
Side = Any  # lightning_models.workflows.compare.Side

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def number(value: float, signed: bool = False) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.4g}" if signed else f"{value:.4g}"


def markdown(comparison: Comparison) -> str:
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
    lines += ["", "## Metrics", "", "Mean ± sample std (n) per side; the difference with its 95% interval: a paired "
              "t-test on the per-seed differences when both sides hold the same seeds (and folds), else Welch's t-test. "
              "better/worse: the interval excludes 0 (loss, mse, error: lower is better; acc, f1, r2: higher). "
              "fit: a train/* metric, no verdict. not comparable: measured on other rows, or another loss.", "",
              "| metric | better | A | B | B - A | 95% interval | p | test | verdict |", "|" + " --- |" * 9]
    for r in comparison.rows:
        cells = [f"{number(m)} ± {number(s)} ({n})" if n else "n/a (0)" for m, s, n in zip(r.means, r.stds, r.counts)]
        lines.append(f"| {r.metric} | {r.direction or '?'} | {r.baseline}: {cells[0]} | {r.label}: {cells[1]} | "
                     f"{number(r.difference, True)} | [{number(r.low, True)}, {number(r.high, True)}] | {number(r.p_value)} | "
                     f"{r.test} | {r.verdict} |")
    return "\n".join([*lines, "", "## Summary", "", *summary(comparison)]) + "\n"


def kind(verdict: str) -> str:
    """The verdict without its details: ``no detectable difference``, ``not comparable``, ``only on one side``, ..."""
    for head in ("no detectable difference", "too few runs", "not comparable", "only in", "fit"):
        if verdict.startswith(head):
            return {"only in": "only on one side", "fit": "fit (no verdict)", "too few runs": "too few runs for an interval"
                    }.get(head, head)
    return verdict  # better, worse, higher, lower


def summary(comparison: Comparison) -> list[str]:
    """One line per side against the first: its metrics by verdict, the wins (better) first; fit, not comparable and
    one-side metrics are listed apart, never as a win."""
    lines = []
    for side in comparison.sides[1:]:
        kinds: dict[str, list[str]] = {}
        for r in (row for row in comparison.rows if row.label == side.label):
            shown = f"{r.metric} ({r.verdict.removeprefix('only in ')})" if r.verdict.startswith("only in") else r.metric
            kinds.setdefault(kind(r.verdict), []).append(shown)
        order = ["better", "worse", "higher", "lower", "no detectable difference", "too few runs for an interval", "not comparable",
                 "fit (no verdict)", "only on one side"]
        parts = [f"{name}{':' if name == 'only on one side' else ' on'} {', '.join(kinds[name])}" for name in order if name in kinds]
        lines.append(f"- {side.label} against {comparison.sides[0].label}: {'; '.join(parts) or 'no metrics'}.")
    return lines


def csv_text(comparison: Comparison) -> str:
    """compare.csv: one row per metric and side against the first side."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "better", "side_a", "side_b", "mean_a", "std_a", "n_a", "mean_b", "std_b", "n_b",
                     "difference_b_minus_a", "low_95", "high_95", "p_value", "test", "verdict"])
    for r in comparison.rows:
        writer.writerow([r.metric, r.direction, r.baseline, r.label, r.means[0], r.stds[0], r.counts[0], r.means[1],
                         r.stds[1], r.counts[1], r.difference, r.low, r.high, r.p_value, r.test, r.verdict])
    return out.getvalue()


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% t interval (the mean alone, twice, for one value or no spread)."""
    mean = statistics.fmean(values)
    if len(values) < 2 or statistics.pstdev(values) == 0:
        return mean, mean, mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = stats.ttest_1samp(values, mean).confidence_interval(0.95)
    return mean, float(interval.low), float(interval.high)


def plot_metrics(comparison: Comparison, path: Path) -> Path:
    """One panel per test and validation metric: every run's value as a dot, each side's mean with its 95% interval."""
    metrics = list(dict.fromkeys(row.metric for row in comparison.rows if row.metric.startswith(("test/", "val/"))))
    columns = min(3, max(1, len(metrics)))
    rows = max(1, -(-len(metrics) // columns))
    figure = Figure(figsize=(4 * columns, 3 * rows), layout="constrained")
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        for position, side in enumerate(comparison.sides):
            values = side.values(metric)
            if not values:
                continue
            colour = COLOURS[position % len(COLOURS)]
            spread = [position + 0.15 * (i / max(1, len(values) - 1) - 0.5) for i in range(len(values))]
            axes.scatter(spread, values, s=12, color=colour, alpha=0.5)
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


def plot_curves(sides: list[Side], path: Path) -> Path | None:
    """The validation curves over steps, every run thin and each side's mean over its runs thick; None when no run
    logged any (runs without TensorBoard event files)."""
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
            steps = sorted(set.intersection(*(set(curve) for curve in found))) if found else []
            if steps:
                axes.plot(steps, [statistics.fmean(curve[step] for curve in found) for step in steps], color=colour,
                          linewidth=2, label=f"{side.label} (mean of {len(found)})")
        axes.set_title(tag)
        axes.set_xlabel("step")
        axes.legend()
    figure.savefig(path, dpi=90)
    return path
