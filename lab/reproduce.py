"""Run every experiment of the registry (source recipe and default config) over seeds into one table.

    python lab/reproduce.py --data-dir ../shared/data            # everything, each experiment's seeds (registry)
    python lab/reproduce.py --quick --only iris,synthetic         # a few steps each: a smoke test
    python lab/reproduce.py --only iris --seeds 0-2               # seeds 0, 1, 2 (also: 0,1,2); --seeds 0: one run
    python lab/reproduce.py --only fashion_cnn --accelerator gpu --out reports/gpu
    python lab/reproduce.py --registry my/experiments.yaml --only wine --out my/reports  # your own registry
    python lab/reproduce.py --update-readme                       # README and docs/results.md tables
    python lab/reproduce.py --check-readme                        # exit 1 when they disagree

Writes ``<out>/RESULTS.md`` and ``<out>/RESULTS.json`` (docs/reproducing.md): each recipe's mean ± sample std (n)
over seeds, a verdict on the source text's figure, wall times, the commit and the CPU. Seed ``n`` is
``lightning_models.workflows.seeds.seed_options(n)``: initialisation, dropout, batch order and augmentation; the data split stays
(``--vary-split``: a split per seed). Every run is ``lightning_models.run`` in this process. ``<out>`` is ``reports/``
for a full run of the project's registry, ``lightning_logs/reproduce/`` otherwise (``--only``, another registry). An
existing report in ``<out>`` is never replaced by one of another kind (quick, accelerator, device, registry, seeds,
split rule) without ``--force``; with ``--only``, one of the same kind keeps its other rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from lab.tables import RECIPES, check_tables, shown_path, table
from lightning_models.training.experiments import REGISTRY, Experiment, load_registry, parse_seeds
from lightning_models.training.run import RunResult
from lightning_models.workflows.seeds import seed_options

ROOT = Path(__file__).resolve().parents[1]

QUICK = ["--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1", "--trainer.limit_train_batches=5",
         "--trainer.limit_val_batches=5", "--trainer.limit_test_batches=5"]


def select(experiments: list[Experiment], text: str | None) -> list[Experiment]:
    names = {part.strip() for part in (text or "").split(",") if part.strip()}
    groups = sorted({e.group for e in experiments})
    if unknown := sorted(names - {e.name for e in experiments} - set(groups)):
        raise SystemExit(f"error: --only: unknown {', '.join(unknown)}; choose from groups {', '.join(groups)} "
                         f"or experiments {', '.join(e.name for e in experiments)}")
    return [e for e in experiments if not names or e.name in names or e.group in names]


def summarize(per_seed: dict[str, list[float | None]]) -> dict:
    """Mean, sample std (n - 1; 0 for one seed), n, min and max of each key's values over seeds."""
    out: dict[str, dict] = {"values": {}, "std": {}, "n": {}, "min": {}, "max": {}}
    for key, values in per_seed.items():
        found = [v for v in values if v is not None]
        out["values"][key] = statistics.fmean(found) if found else None
        out["std"][key] = statistics.stdev(found) if len(found) > 1 else (0.0 if found else None)
        out["n"][key] = len(found)
        out["min"][key], out["max"][key] = (min(found), max(found)) if found else (None, None)
    return out


def verdict(e: Experiment, source: dict | None) -> tuple[str, str]:
    """("reproduced" | "differs" | "—", why): the source text's figure against the seeds of ``source``, the source
    recipe's result (the default's for experiments whose config is the text's)."""
    figure = e.source_figure
    if not figure:
        return "—", "the text reports no number to compare"
    if source is None:
        return "—", "not run"
    low, high = source["min"].get(figure["key"]), source["max"].get(figure["key"])
    if low is None:
        return "—", f"{figure['key']} missing"
    if "value" in figure:  # the text's figure is rounded: half a unit of its last digit either side
        half = 0.5 * 10 ** -len(repr(float(figure["value"])).split(".")[1])
        ok, measured = low - half <= figure["value"] <= high + half, f"text {figure['value']}, seeds {low:.4g}..{high:.4g}"
    elif "at_most" in figure:
        ok, measured = high <= figure["at_most"], f"all seeds <= {figure['at_most']}: max {high:.4g}"
    else:
        ok, measured = low >= figure["at_least"], f"all seeds >= {figure['at_least']}: min {low:.4g}"
    return ("reproduced", measured) if ok else ("differs", f"{measured}; {e.differs_because or 'cause not found'}")


def run_one(config: Path, overrides: list[str]) -> RunResult:
    from lightning_models import run

    return run(config, "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *overrides)


def value(result: RunResult, key: str) -> float | None:
    found = result.metrics.get(key.split("/", 1)[0], {}).get(key)
    return None if found is None else float(found)


def run_all(experiments: list[Experiment], args: argparse.Namespace,
            runner: Callable[[Path, list[str]], RunResult] = run_one) -> list[dict]:
    """Every (experiment, recipe) once per seed; ``runner(config, options)`` is ``run_one`` (tests pass a fake)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lightning_models.machine import code_record

    code = code_record()
    revision = "unknown" if code is None else code["commit"][:7] + ("+changes" if code["dirty"] else "")
    overrides = [*(QUICK if args.quick else []), f"--trainer.accelerator={args.accelerator}"]
    seeds = {e.name: parse_seeds(args.seeds or ("0" if args.quick else e.seeds)) for e in experiments}
    jobs = [(e, recipe) for e in experiments for recipe in RECIPES
            if (recipe == "default" or e.source_config is not None) and (not e.needs_data_dir or args.data_dir)]
    rows = {e.name: {"experiment": e.name, **e.record(), "source": None, "default": None,
                     **({"note": "skipped: no --data-dir"} if e.needs_data_dir and not args.data_dir else {})} for e in experiments}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        task = progress.add_task("experiments", total=sum(len(seeds[e.name]) for e, _ in jobs))
        for e, recipe in jobs:
            config, runs = e.config(recipe), []
            for seed in seeds[e.name]:
                progress.update(task, description=f"{e.name} ({recipe}, seed {seed})")
                started = time.perf_counter()
                result = runner(config, [*overrides, *e.data_overrides(args.data_dir), *(e.quick_overrides if args.quick else []),
                                         *seed_options(seed, config, args.vary_split)])
                runs.append((result, round(time.perf_counter() - started, 1)))
                progress.advance(task)
            keys = e.source_keys if recipe == "source" else e.default_keys
            per_seed = {key: [value(result, key) for result, _ in runs] for key in keys}
            first = runs[0][0]
            rows[e.name][recipe] = {
                **summarize(per_seed), "per_seed": per_seed, "seeds": seeds[e.name],
                "sklearn": summarize({"s": [value(result, e.sklearn_key) for result, _ in runs]})["values"]["s"] if e.sklearn_key else None,
                "wall_time_s": round(sum(seconds for _, seconds in runs), 1), "wall_times_s": [seconds for _, seconds in runs],
                "epochs": first.record["epochs"], "global_step": first.record["global_step"],
                "run_dir": str(first.folder), "run_dirs": [str(result.folder) for result, _ in runs],
                "config": shown_path(config), "date": time.strftime("%Y-%m-%d"), "commit": revision,
            }
    for e in experiments:
        rows[e.name]["verdict"], rows[e.name]["verdict_reason"] = verdict(e, rows[e.name]["source" if e.source_config else "default"])
    return list(rows.values())


def machine(accelerator: str = "auto") -> dict:
    """The device, the CPU model and the vector extensions float results depend on, the library versions. A GPU only
    where the runs train on one (``--accelerator`` auto or gpu, and CUDA here): a CPU run's report names none."""
    import platform

    import torch

    from lightning_models.machine import CUDA_ACCELERATORS, cpu_info, gpu_facts
    from lightning_models.training.run import library_versions

    model, flags = cpu_info()
    extensions = [flag for flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if flag in flags]
    gpu = gpu_facts() if accelerator in CUDA_ACCELERATORS and torch.cuda.is_available() else None  # starts no CUDA here
    return {"device": gpu["name"] if gpu else f"CPU, {os.cpu_count()} cores",
            "gpu_capability": gpu and gpu["capability"], "cuda": gpu and torch.version.cuda,
            "cudnn": gpu and torch.backends.cudnn.version(), "gpus_visible": gpu and torch.cuda.device_count(),
            "cpu": model, "cpu_extensions": extensions, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(), "threads": torch.get_num_threads(), **library_versions()}


def output_folder(args: argparse.Namespace) -> Path:
    """``--out``; by default ``reports`` for a full run of the project's registry, else a folder git ignores."""
    if args.out:
        return Path(args.out)
    full = not args.only and Path(args.registry).resolve() == REGISTRY
    return Path("reports" if full else "lightning_logs/reproduce")


def report_kind(meta: dict) -> dict:
    """What makes two reports comparable row by row; reports from before a field existed get the value they had."""
    return {"quick": meta.get("quick"), "accelerator": meta.get("accelerator"), "device": meta["machine"]["device"],
            "registry": meta.get("registry", shown_path(REGISTRY)), "seeds": meta.get("seeds"),
            "split": meta.get("split", "one per seed")}  # a report without the field moved the split with the seed


def kind_of(args: argparse.Namespace) -> dict:
    return {"quick": args.quick, "accelerator": args.accelerator, "registry": shown_path(Path(args.registry).resolve()),
            "seeds": args.seeds, "split": "one per seed" if args.vary_split else "fixed", "machine": machine(args.accelerator)}


def other_kind(out: Path, args: argparse.Namespace) -> str | None:
    """Why the report in ``out`` is of another kind than this run would write (None: same kind, or no report)."""
    if not (out / "RESULTS.json").is_file():
        return None
    old, new = report_kind(json.loads((out / "RESULTS.json").read_text())["meta"]), report_kind(kind_of(args))
    differ = [f"{key} {old[key]!r} there, {new[key]!r} now" for key in new if old[key] != new[key]]
    return "; ".join(differ) or None


def write_report(rows: list[dict], args: argparse.Namespace, seconds: float, experiments: list[Experiment]) -> None:
    out = output_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), **kind_of(args), "data_dir": args.data_dir, "total_wall_time_s": round(seconds, 1)}
    old = json.loads((out / "RESULTS.json").read_text()) if args.only and (out / "RESULTS.json").is_file() else None
    if old and other_kind(out, args):  # --force: main() refused it otherwise
        print(f"note: {out / 'RESULTS.json'} comes from another kind of run; --force: it is replaced, not merged")
    elif old:  # the listed experiments' rows replace theirs; the others stay
        merged = {row["name"]: row for row in [*old["experiments"], *rows]}
        rows = [merged[e.name] for e in experiments if e.name in merged]
    runs = [row[recipe] for row in rows for recipe in RECIPES if row[recipe]]
    if args.only:
        meta["total_wall_time_s"] = round(sum(run["wall_time_s"] for run in runs), 1)
        meta["date"] = ", ".join(sorted({run["date"] for run in runs})) or meta["date"]
    by_name = {e.name: e for e in experiments}
    for row in rows:  # the registry's figures and reasons as they are now, for kept rows too
        result = row["source"] if row.get("source_keys") else row["default"]
        if row["name"] in by_name and result and "min" in result:
            row["verdict"], row["verdict_reason"] = verdict(by_name[row["name"]], result)
    (out / "RESULTS.json").write_text(json.dumps({"meta": meta, "experiments": rows}, indent=2) + "\n")
    m = meta["machine"]
    revisions = sorted({run["commit"] for run in runs if run.get("commit")})
    text = [
        "# Results", "",
        f"Generated by `python lab/reproduce.py{' --quick' if args.quick else ''}` on {meta['date']}: "
        f"{m['device']}, torch {m['torch']}, pytorch-lightning {m['pytorch_lightning']}, accelerator "
        f"`{args.accelerator}`; {meta['total_wall_time_s'] / 60:.1f} min of runs in all. "
        f"CPU: {m.get('cpu', 'unknown')} ({', '.join(m.get('cpu_extensions', [])) or 'no listed extensions'}); "
        f"commit{'s' if len(revisions) > 1 else ''} {', '.join(revisions) or 'unknown'}."
        + (f" Last re-run: `--only {args.only}`; the other rows come from the earlier report." if args.only else "")
        + (" **Quick mode: a few steps each, not results.**" if args.quick else ""),
        "Each cell: mean ± sample std (n - 1) over the row's n seeds (`seeds` and `n` in the JSON, with every seed's value,",
        "min, max and run folder); a seed moves init, dropout and batch order"
        + (", and the split (`--vary-split`)." if args.vary_split else ", not the split.")
        + " Test split unless the metric says otherwise. Source-recipe configs train on all",
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
    parser.add_argument("--data-dir", default=None, help="folder for experiments with needs_data_dir (holding FashionMNIST/raw/)")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (the GPU when there is one)")
    parser.add_argument("--seeds", default=None, help="seeds per row, e.g. 0-4 or 0,1,2 (default: the registry's; --quick: 0)")
    parser.add_argument("--registry", default=str(REGISTRY), help="the experiment registry (default: configs/experiments.yaml)")
    parser.add_argument("--out", default=None, help="folder for RESULTS.md/.json (default: reports/ for a full run of the project's "
                        "registry, else lightning_logs/reproduce/; --update-readme: the project's reports/)")
    parser.add_argument("--vary-split", action="store_true", help="each seed also draws its own data split (default: one split)")
    parser.add_argument("--force", action="store_true", help="replace a report in --out of another kind (quick, accelerator, "
                        "device, registry, seeds, split)")
    parser.add_argument("--update-readme", action="store_true", help="rewrite README.md's and docs/results.md's tables from the report")
    parser.add_argument("--check-readme", action="store_true", help="exit 1 when those tables differ from what --update-readme writes")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.registry)
    except ValueError as error:
        parser.error(str(error))
    try:
        parse_seeds(args.seeds or "0")
    except ValueError as error:
        parser.error(f"--{error}")
    if args.update_readme or args.check_readme:
        if Path(args.registry).resolve() != REGISTRY:
            parser.error(f"--registry {args.registry}: the project's tables come from {shown_path(REGISTRY)}; "
                         "--update-readme and --check-readme take no other registry")
        report = Path(args.out or ROOT / "reports") / "RESULTS.json"
        if not report.is_file():
            parser.error(f"no report at {report}; run lab/reproduce.py first or give --out")
        return check_tables(report, ROOT / "README.md", ROOT / "docs" / "results.md", registry, update=args.update_readme)
    experiments = select(registry, args.only)
    if args.data_dir and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir!r} is not a folder")
    import pytorch_lightning  # noqa: F401  (configures its loggers on import: quieten them afterwards)

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if (reason := other_kind(output_folder(args), args)) and not args.force:
        parser.exit(2, f"error: {output_folder(args) / 'RESULTS.json'} holds another kind of report ({reason}); "
                       "give another --out, or --force to replace it\n")
    started = time.perf_counter()
    write_report(run_all(experiments, args), args, time.perf_counter() - started, registry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
