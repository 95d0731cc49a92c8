"""Is B better than A? Two or more sides (run folders, folders of runs, configs run now per seed), a verdict per
metric against the first (docs/compare.md): paired t by (seed, fold) when both sides hold the same keys, else Welch."""

from __future__ import annotations

import json
import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

from lightning_models.checks import ConfigError
from lightning_models.training.run import build, run
from lightning_models.training.run_folders import LOG_ROOT, named_run_options
from lightning_models.util import mean_spread
from lightning_models.workflows.compare_report import csv_text, direction, judge, markdown, plot_curves, plot_metrics
from lightning_models.workflows.seeds import seed_options

# Where a run logs or how it prints is no difference between configurations; nor is the fold (its rows are: rows_differ).
NOT_THE_CONFIG = ("trainer.logger", "log_hparams", "ckpt_path", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                  "progress_bar", "data.init_args.fold")
ACCEPTED = "a run folder (it holds metrics.json), a folder of runs, a cross-validation folder, or a config .yaml to train"



class CompareError(ConfigError):
    """Bad compare input: printed as one line, exit status 2."""


@dataclass
class Run:
    folder: Path
    metrics: dict[str, float]  # stage/name -> value
    config: dict[str, Any]  # dotted keys
    key: tuple[Any, Any]  # (seed, fold): what pairs runs


@dataclass
class Side:
    label: str
    source: str
    runs: list[Run]

    def values(self, metric: str) -> list[float]:
        return [run.metrics[metric] for run in self.runs if metric in run.metrics]


@dataclass
class MetricRow:
    """``metric`` of side ``label`` against ``baseline``: means, stds, counts, ``label - baseline`` [low, high], p, verdict."""

    metric: str
    direction: str  # "higher", "lower" or "" (unknown: no better or worse)
    baseline: str
    label: str
    means: tuple[float, float]
    stds: tuple[float, float]
    counts: tuple[int, int]
    difference: float
    low: float
    high: float
    p_value: float
    test: str
    verdict: str


@dataclass
class Comparison:
    """What ``compare`` returns: the sides, the config keys that differ (key -> one text per side) and the rows."""

    sides: list[Side]
    differing: dict[str, list[str]]
    rows: list[MetricRow] = field(default_factory=list)

    def markdown(self) -> str:
        return markdown(self)

    def csv(self) -> str:
        return csv_text(self)

    def write(self, folder: str | Path) -> list[Path]:
        """compare.md, compare.csv, compare.png and (when the runs logged val/ curves) curves.png into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "compare.md").write_text(self.markdown())
        (folder / "compare.csv").write_text(self.csv())
        written = [folder / "compare.md", folder / "compare.csv", plot_metrics(self, folder / "compare.png")]
        return written + [path for path in [plot_curves(self.sides, folder / "curves.png")] if path is not None]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: ``{"model.init_args.optimizer.init_args.lr": 0.003, ...}``."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None or not value:
        return {prefix: value}
    return {key: leaf for name, item in items for key, leaf in flatten(item, f"{prefix}.{name}" if prefix else str(name)).items()}


def load_run(folder: Path) -> Run:
    record = json.loads((folder / "metrics.json").read_text())
    config_path = folder / "config.yaml"
    config = flatten(yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    metrics = {key: float(value) for stage in ("test", "val", "train") for key, value in sorted((record.get(stage) or {}).items())}
    return Run(folder, metrics, config, (record.get("seed"), config.get("data.init_args.fold")))


def load_runs(path: str | Path, label: str = "") -> list[Run]:
    """The run at ``path`` (it holds ``metrics.json``), or every run under it."""
    path, side = Path(path), f"side {label}: " if label else ""
    if path.is_file():
        given = f"give its folder, {path.parent}" if path.name == "metrics.json" else f"a side is {ACCEPTED}"
        raise CompareError(f"{side}{path} is a file{': ' if path.name == 'metrics.json' else '; '}{given}")
    if not path.is_dir():
        raise CompareError(f"{side}{path}: no such folder; a side is {ACCEPTED}")
    folders = [path] if (path / "metrics.json").is_file() else sorted(found.parent for found in path.rglob("metrics.json"))
    if not folders:
        raise CompareError(f"{side}{path}: no metrics.json in it or under it; a run writes one when it ends")
    return [load_run(folder) for folder in folders]


def paired(a: Side, b: Side, metric: str) -> tuple[list[float], list[float]] | None:
    """Both sides' values in the order of their (seed, fold) keys, when both hold the same keys once each."""
    keyed = [{run.key: run.metrics[metric] for run in side.runs if metric in run.metrics} for side in (a, b)]
    counts = [len(side.values(metric)) for side in (a, b)]
    if keyed[0].keys() != keyed[1].keys() or counts != [len(keyed[0])] * 2 or len(keyed[0]) < 2:
        return None
    order = sorted(keyed[0], key=str)
    return [keyed[0][key] for key in order], [keyed[1][key] for key in order]


def difference(a: Side, b: Side, metric: str) -> tuple[float, float, float, float, str]:
    """``(b - a, low, high, p)`` at 95% and the test's name."""
    pairs = paired(a, b, metric)
    with warnings.catch_warnings():  # identical values: scipy warns, and its nan or zero-width interval says it
        warnings.simplefilter("ignore", RuntimeWarning)
        if pairs is not None:
            result, test = stats.ttest_rel(pairs[1], pairs[0]), f"paired t (n={len(pairs[0])} pairs)"
            diff = statistics.fmean(pairs[1]) - statistics.fmean(pairs[0])
        else:
            x, y = a.values(metric), b.values(metric)
            diff, test = statistics.fmean(y) - statistics.fmean(x), "Welch t"
            if min(len(x), len(y)) < 2:
                return diff, math.nan, math.nan, math.nan, test
            result = stats.ttest_ind(y, x, equal_var=False)
        interval = result.confidence_interval(0.95)
    low, high = float(interval.low), float(interval.high)
    if math.isnan(low) and pairs is None and statistics.pstdev(a.values(metric)) == statistics.pstdev(b.values(metric)) == 0:
        low = high = diff  # no spread on either side: the difference is exact
    return diff, low, high, float(result.pvalue), test


def compare_sides(sides: list[Side]) -> Comparison:
    """Each side after the first against the first; a metric one of the two lacks is a row "only in <side>"."""
    base = sides[0]
    metrics = list(dict.fromkeys(metric for side in sides for run in side.runs for metric in run.metrics))
    rows = []
    for other in sides[1:]:
        differing = differing_keys([base, other])
        for metric in metrics:
            x, y = base.values(metric), other.values(metric)
            if not x and not y:
                continue
            (mean_a, std_a), (mean_b, std_b) = (mean_spread(values) if values else (math.nan, math.nan) for values in (x, y))
            if x and y:
                diff, low, high, p, test = difference(base, other, metric)
                said = judge(metric, base, other, differing, diff, low, high, min(len(x), len(y)))
            else:
                diff = low = high = p = math.nan
                test, said = "", f"only in {(base if x else other).label}"
            rows.append(MetricRow(metric, direction(metric), base.label, other.label, (mean_a, mean_b), (std_a, std_b),
                                  (len(x), len(y)), diff, low, high, p, test, said))
    return Comparison(sides, differing_keys(sides), rows)


def differing_keys(sides: list[Side]) -> dict[str, list[str]]:
    """Config keys whose values differ between sides (a side's values over its runs joined)."""
    keys = dict.fromkeys(key for side in sides for run in side.runs for key in run.config if not key.startswith(NOT_THE_CONFIG))
    shown = {}
    for key in keys:
        per_side = [sorted({json.dumps(run.config.get(key, "(unset)")) for run in side.runs}) for side in sides]
        if any(values != per_side[0] for values in per_side[1:]):
            shown[key] = [", ".join(value.strip('"') for value in values) for values in per_side]
    return shown


def run_side(label: str, spec: list[str], config: Any, seeds: list[int], options: list[str], name: str, vary_split: bool) -> Side:
    """``spec`` run once per seed into ``lightning_logs/<experiment>/<name>/<label>/seed_<n>``; finished seeds are read."""
    folder = Path(LOG_ROOT, config.experiment_name, name, label)
    settings = {"side": [str(part) for part in spec], "options": options, "seeds": seeds, "vary_split": vary_split}
    saved = yaml.safe_load((folder / "side.yaml").read_text()) if (folder / "side.yaml").is_file() else None
    if saved is not None and {k: v for k, v in saved.items() if k != "seeds"} != {k: v for k, v in settings.items() if k != "seeds"}:
        raise CompareError(f"{folder} holds side {label} of another comparison ({saved['side']}); pass --name for a new one")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "side.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    runs = []
    for seed in seeds:
        target = folder / f"seed_{seed}"
        if not (target / "metrics.json").is_file():
            run(*spec, *options, *seed_options(seed, config, vary_split), *named_run_options(target, {"side": label, "seed": seed}))
        runs.append(load_run(target))
        tests = ", ".join(f"{k}={v:.4g}" for k, v in runs[-1].metrics.items() if k.startswith("test/"))
        print(f"side {label}, seed {seed}: {tests}", flush=True)
    return Side(label, " ".join(spec), runs)


def compare(*sides: str | Path | list[str], seeds: list[int] | None = None, options: list[str] | tuple[str, ...] = (),
            name: str = "compare", vary_split: bool = False) -> Comparison:
    """Compare two or more sides; a config side (a ``.yaml``, or a list of it and its options) runs now over ``seeds``
    (default 0-4) with ``options``. Every side is checked before any trains."""
    if len(sides) < 2:
        raise CompareError(f"compare needs at least two sides (A B ...), got {len(sides)}")
    specs = {chr(ord("A") + index): [str(part) for part in side] if isinstance(side, (list, tuple)) else [str(side)]
             for index, side in enumerate(sides)}
    found, configs = {}, {}
    for label, spec in specs.items():
        if spec[0].endswith((".yaml", ".yml")):
            configs[label] = check_config_side(label, spec, list(options), vary_split)
        elif len(spec) > 1:
            raise CompareError(f"side {label}: {spec[0]} is no config (.yaml); options go with a config only")
        else:
            found[label] = Side(label, spec[0], load_runs(spec[0], label))
    return compare_sides([found.get(label) or run_side(label, spec, configs[label], list(seeds or range(5)), list(options), name,
                                                       vary_split) for label, spec in specs.items()])


def check_config_side(label: str, spec: list[str], options: list[str], vary_split: bool) -> Any:
    """The side's built config (nothing trained or written); a bad option is one line naming the side."""
    if not Path(spec[0]).is_file():
        raise CompareError(f"side {label}: {spec[0]}: no such config file")
    if vary_split and (given := [o for o in [*spec, *options] if o.split("=")[0] == "--data.init_args.seed"]):
        raise CompareError(f"side {label}: --vary-split sets data.init_args.seed per seed, and {given[0]} sets it too; drop one")
    try:
        return build(*spec, *options).config
    except ValueError as error:  # ConfigError: build() turns the parser's refusals into one line too
        raise CompareError(f"side {label}: {error}") from None
