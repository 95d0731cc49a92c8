"""Run every experiment of the registry (source recipe and default config) into one table.

    python lab/reproduce.py --data-dir ../shared/data            # everything, each experiment's seeds (registry)
    python lab/reproduce.py --quick --only iris,synthetic         # a few steps each: a smoke test
    python lab/reproduce.py --only iris --seeds 0-2               # seeds 0, 1, 2 (also: 0,1,2); --seeds 0: one run
    python lab/reproduce.py --only fashion_cnn --data-dir ../shared/data  # re-run one row of reports/
    python lab/reproduce.py --only fashion_cnn --accelerator gpu --out reports/gpu
    python lab/reproduce.py --registry my/experiments.yaml --only wine --out my/reports  # your own registry
    python lab/reproduce.py --update-readme                       # README and docs/results.md tables
    python lab/reproduce.py --check-readme                        # exit 1 when they disagree

Writes ``<out>/RESULTS.md`` and ``<out>/RESULTS.json``: per experiment the metric, the figure the
source text reports, the scikit-learn baseline where there is one, this project's source-recipe and
default results as mean +- std over seeds (every seed's value, min and max in the JSON), a verdict
on the source text's figure (within the source recipe's min-max over seeds: "reproduced"), wall
times, the commit and the CPU. Seed ``n`` runs a config with ``--seed_everything n`` and its
datamodule's ``seed`` plus ``n`` (weights, dropout, split and batch order all change). Every run is
``lightning_models.run`` in this process; logs go to ``lightning_logs/<experiment>/version_N`` as with
train.py. With ``--only``, an existing report in ``<out>`` of the same kind (quick or not, same
accelerator and device) keeps its other rows: the listed experiments are re-run and replaced.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: lab/ is not an installed package
    sys.path.insert(0, str(ROOT))

from lab.tables import RECIPES, check_tables, shown_path, table  # noqa: E402
from lightning_models.experiments import REGISTRY, Experiment, load_registry, parse_seeds  # noqa: E402
from lightning_models.run import RunResult  # noqa: E402

QUICK = ["--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1", "--trainer.limit_train_batches=5",
         "--trainer.limit_val_batches=5", "--trainer.limit_test_batches=5"]
Runner = Callable[[Path, list[str]], RunResult]  # (config, options) -> the run's result


def groups(experiments: list[Experiment]) -> list[str]:
    return sorted({experiment.group for experiment in experiments})


def select(experiments: list[Experiment], text: str | None) -> list[Experiment]:
    if not text:
        return list(experiments)
    names = {part.strip() for part in text.split(",") if part.strip()}
    known = {experiment.name for experiment in experiments} | set(groups(experiments))
    if unknown := sorted(names - known):
        raise SystemExit(f"error: --only: unknown {', '.join(unknown)}; choose from groups {', '.join(groups(experiments))} "
                         f"or experiments {', '.join(e.name for e in experiments)}")
    return [e for e in experiments if e.name in names or e.group in names]


def data_seed(config: Path) -> int | None:
    """The seed the config's datamodule uses: its ``seed`` argument, else the class's default; None: it has none."""
    import importlib
    import inspect

    import yaml

    data = yaml.safe_load(config.read_text())["data"]
    if "seed" in (data.get("init_args") or {}):
        return int(data["init_args"]["seed"])
    module, _, name = data["class_path"].rpartition(".")
    parameter = inspect.signature(getattr(importlib.import_module(module), name)).parameters.get("seed")
    return None if parameter is None or not isinstance(parameter.default, int) else parameter.default


def summarize(per_seed: dict[str, list[float | None]]) -> dict:
    """Mean, sample std (0 for one seed), min and max of each key's values over seeds."""
    import statistics

    out: dict[str, dict] = {"values": {}, "std": {}, "min": {}, "max": {}}
    for key, values in per_seed.items():
        found = [v for v in values if v is not None]
        out["values"][key] = statistics.fmean(found) if found else None
        out["std"][key] = statistics.stdev(found) if len(found) > 1 else (0.0 if found else None)
        out["min"][key], out["max"][key] = (min(found), max(found)) if found else (None, None)
    return out


def verdict(e: Experiment, source: dict | None) -> tuple[str, str]:
    """("reproduced" | "differs" | "—", why): the source text's figure against the source recipe's seeds
    (``source``: the source recipe's result, or the default's for experiments whose config is the text's)."""
    figure = e.source_figure
    if not figure:
        return "—", "the text reports no number to compare"
    if source is None:
        return "—", "not run"
    key = figure["key"]
    low, high = source["min"].get(key), source["max"].get(key)
    if low is None:
        return "—", f"{key} missing"
    if "value" in figure:  # the text's figure is rounded: half a unit of its last digit either side
        half = 0.5 * 10 ** -len(repr(float(figure["value"])).split(".")[1])
        ok = low - half <= figure["value"] <= high + half
        measured = f"text {figure['value']}, seeds {low:.4g}..{high:.4g}"
    elif "at_most" in figure:
        ok, measured = high <= figure["at_most"], f"all seeds <= {figure['at_most']}: max {high:.4g}"
    else:
        ok, measured = low >= figure["at_least"], f"all seeds >= {figure['at_least']}: min {low:.4g}"
    if ok:
        return "reproduced", measured
    return "differs", f"{measured}; {e.differs_because or 'cause not found'}"


def commit() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def run_one(config: Path, overrides: list[str]) -> RunResult:
    """Train, validate and test one config in this process."""
    from lightning_models import run

    return run(config, "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *overrides)


def value(result: RunResult, key: str) -> float | None:
    found = result.metrics.get(key.split("/", 1)[0], {}).get(key)
    return None if found is None else float(found)


def seed_options(config: Path, seed: int) -> list[str]:
    data = data_seed(config)
    return [f"--seed_everything={seed}", *([] if data is None else [f"--data.init_args.seed={data + seed}"])]


def run_all(experiments: list[Experiment], args: argparse.Namespace, runner: Runner | None = None) -> list[dict]:
    """Every (experiment, recipe) once per seed; ``runner`` defaults to ``run_one`` (tests pass a fake)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    runner = runner or run_one
    overrides = [*(QUICK if args.quick else []), f"--trainer.accelerator={args.accelerator}"]
    seeds = {e.name: parse_seeds(args.seeds or ("0" if args.quick else e.seeds)) for e in experiments}
    jobs = [(e, recipe) for e in experiments for recipe in RECIPES
            if (recipe == "default" or e.source_config is not None) and (not e.needs_data_dir or args.data_dir)]
    rows = {e.name: {"experiment": e.name, **e.record(), "source": None, "default": None} for e in experiments}
    for e in experiments:
        if e.needs_data_dir and not args.data_dir:
            rows[e.name]["note"] = "skipped: no --data-dir"
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    revision = commit()
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("experiments", total=sum(len(seeds[e.name]) for e, _ in jobs))
        for e, recipe in jobs:
            keys = e.source_keys if recipe == "source" else e.default_keys
            config = e.config(recipe)
            extra = [*e.data_overrides(args.data_dir), *(e.quick_overrides if args.quick else [])]
            runs: list[tuple[RunResult, float]] = []
            for seed in seeds[e.name]:
                progress.update(task, description=f"{e.name} ({recipe}, seed {seed})")
                started = time.perf_counter()
                result = runner(config, [*overrides, *extra, *seed_options(config, seed)])
                runs.append((result, round(time.perf_counter() - started, 1)))
                progress.advance(task)
            per_seed = {key: [value(result, key) for result, _ in runs] for key in keys}
            sklearn = [value(result, e.sklearn_key) for result, _ in runs] if e.sklearn_key else None
            first = runs[0][0]
            rows[e.name][recipe] = {
                **summarize(per_seed), "per_seed": per_seed, "seeds": seeds[e.name],
                "sklearn": summarize({"s": sklearn})["values"]["s"] if sklearn else None,
                "wall_time_s": round(sum(seconds for _, seconds in runs), 1),
                "wall_times_s": [seconds for _, seconds in runs],
                "epochs": first.record["epochs"], "global_step": first.record["global_step"],
                "run_dir": str(first.folder), "run_dirs": [str(result.folder) for result, _ in runs],
                "config": shown_path(config), "date": time.strftime("%Y-%m-%d"), "commit": revision,
            }
    for e in experiments:
        recipe = "source" if e.source_config else "default"
        rows[e.name]["verdict"], rows[e.name]["verdict_reason"] = verdict(e, rows[e.name][recipe])
    return list(rows.values())


def machine() -> dict:
    import platform

    import torch

    from lightning_models.run import library_versions

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    return {"device": device, **cpu(), "platform": platform.platform(), "threads": torch.get_num_threads(),
            **library_versions()}


def cpu() -> dict:
    """CPU model and the vector extensions float results depend on (Linux's /proc/cpuinfo)."""
    import torch

    from lightning_models.machine import cpu_info

    model, flags = cpu_info()
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    return {"cpu": model, "cpu_extensions": [flag for flag in wanted if flag in flags],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def merge_rows(rows: list[dict], out: Path, meta: dict, experiments: list[Experiment]) -> list[dict]:
    """``rows`` plus the other experiments' rows of an existing report of the same kind in ``out``."""
    path = out / "RESULTS.json"
    if not path.is_file():
        return rows
    old = json.loads(path.read_text())
    same = ("quick", "accelerator")
    if any(old["meta"].get(key) != meta[key] for key in same) or old["meta"]["machine"]["device"] != meta["machine"]["device"]:
        print(f"note: {path} comes from another kind of run (quick, accelerator or device differ); it is replaced, not merged")
        return rows
    new = {row["name"]: row for row in rows}
    merged = {**{row["name"]: row for row in old["experiments"]}, **new}
    return [merged[e.name] for e in experiments if e.name in merged]


def write_report(rows: list[dict], args: argparse.Namespace, seconds: float, experiments: list[Experiment]) -> None:
    out = Path(args.out or "reports")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick, "accelerator": args.accelerator,
            "data_dir": args.data_dir, "total_wall_time_s": round(seconds, 1), "machine": machine()}
    if args.only:
        rows = merge_rows(rows, out, meta, experiments)
        runs = [row[recipe] for row in rows for recipe in RECIPES if row[recipe]]
        meta["total_wall_time_s"] = round(sum(run["wall_time_s"] for run in runs), 1)
        meta["date"] = ", ".join(sorted({run["date"] for run in runs})) or meta["date"]
    by_name = {e.name: e for e in experiments}
    for row in rows:  # the registry's figures and reasons as they are now, for kept rows too
        result = row["source"] if row.get("source_keys") else row["default"]
        if row["name"] in by_name and result and "min" in result:
            row["verdict"], row["verdict_reason"] = verdict(by_name[row["name"]], result)
    (out / "RESULTS.json").write_text(json.dumps({"meta": meta, "experiments": rows}, indent=2) + "\n")
    m = meta["machine"]
    revisions = sorted({row[recipe]["commit"] for row in rows for recipe in RECIPES if row[recipe] and row[recipe].get("commit")})
    text = [
        "# Results", "",
        f"Generated by `python lab/reproduce.py{' --quick' if args.quick else ''}` on {meta['date']}: "
        f"{m['device']}, torch {m['torch']}, pytorch-lightning {m['pytorch_lightning']}, accelerator "
        f"`{args.accelerator}`; {meta['total_wall_time_s'] / 60:.1f} min of runs in all. "
        f"CPU: {m.get('cpu', 'unknown')} ({', '.join(m.get('cpu_extensions', [])) or 'no listed extensions'}); "
        f"commit{'s' if len(revisions) > 1 else ''} {', '.join(revisions) or 'unknown'}."
        + (f" Last re-run: `--only {args.only}`; the other rows come from the earlier report." if args.only else "")
        + (" **Quick mode: a few steps each, not results.**" if args.quick else ""),
        "Each cell: mean ± sample std over the row's seeds (`seeds` in the JSON, with every seed's value, min, max and",
        "run folder). Test split unless the metric says otherwise. Source-recipe configs train on all",
        "training rows and validate on them, so their train metric is the one the source texts report.",
        "Machine-readable: `RESULTS.json` beside this file.", "",
        table(rows, out), "",
    ]
    (out / "RESULTS.md").write_text("\n".join(text))
    print(f"wrote {out / 'RESULTS.md'} and {out / 'RESULTS.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help="comma-separated experiments or groups of the registry")
    parser.add_argument("--quick", action="store_true", help="2 epochs of at most 5 batches each: checks, not results")
    parser.add_argument("--data-dir", default=None,
                        help="folder for experiments with needs_data_dir (Fashion-MNIST: holding FashionMNIST/raw/); skipped without it")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (the GPU when there is one)")
    parser.add_argument("--seeds", default=None,
                        help="seeds per row, e.g. 0-4 or 0,1,2 (default: the registry's seeds, 0-4 unless it says; --quick: 0)")
    parser.add_argument("--registry", default=str(REGISTRY), help="the experiment registry (default: configs/experiments.yaml)")
    parser.add_argument("--out", default=None,
                        help="folder for RESULTS.md and RESULTS.json (default: reports/ here; with --update-readme, the project's)")
    parser.add_argument("--update-readme", action="store_true",
                        help="rewrite README.md's experiments table and docs/results.md's results table from <out>/RESULTS.json")
    parser.add_argument("--check-readme", action="store_true", help="exit 1 when those tables differ from what --update-readme writes")
    parser.add_argument("--readme", default=str(ROOT / "README.md"), help=argparse.SUPPRESS)
    parser.add_argument("--results-page", default=str(ROOT / "docs" / "results.md"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.registry)
    except ValueError as error:
        parser.error(str(error))
    if args.update_readme or args.check_readme:
        if Path(args.registry).resolve() != REGISTRY:
            parser.error(f"--registry {args.registry}: the project's tables come from {shown_path(REGISTRY)}; "
                         "--update-readme and --check-readme take no other registry")
        report = Path(args.out or ROOT / "reports") / "RESULTS.json"
        if not report.is_file():
            parser.error(f"no report at {report}; run lab/reproduce.py first or give --out")
        return check_tables(report, Path(args.readme), Path(args.results_page), registry, update=args.update_readme)
    experiments = select(registry, args.only)
    if args.seeds is not None:
        try:
            parse_seeds(args.seeds)
        except ValueError as error:
            parser.error(f"--{error}")
    if args.data_dir and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir!r} is not a folder")
    import pytorch_lightning  # noqa: F401  (configures its loggers on import: quieten them afterwards)

    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended")  # runs in-process on purpose
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    started = time.perf_counter()
    rows = run_all(experiments, args)
    write_report(rows, args, time.perf_counter() - started, registry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
