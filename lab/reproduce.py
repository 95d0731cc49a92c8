"""Run what is missing or stale in the ledger (``reports/runs/``), every experiment and seed, into one table.

    python lab/reproduce.py --data-dir ../shared/data            # everything missing or stale, each experiment's seeds
    python lab/reproduce.py --plan --data-dir ../shared/data     # what would run, and the time it would take; runs nothing
    python lab/reproduce.py --only iris --seeds 0                # seed 0 of the iris rows
    python lab/reproduce.py --quick --only iris,synthetic         # a few steps each: a smoke test (lightning_logs/reproduce/)
    python lab/reproduce.py --registry my/experiments.yaml --only wine --out my/reports  # your own registry
    python lab/reproduce.py --update-readme                       # RESULTS.json/.md, README and docs/results.md tables
    python lab/reproduce.py --check-readme                        # exit 1 when they differ from the ledger

Each run writes its record (``lab/ledger.py``) when it finishes, so a killed reproduction goes on where it stopped.
Runs go to ``--jobs`` processes (every core; one thread each), the experiments that need ``--data-dir`` after them
with every thread. ``<out>/RESULTS.md`` and ``RESULTS.json`` are made from the records (docs/reproducing.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import ledger
from tables import check_tables, results_page

from lightning_models.training.experiments import REGISTRY, Experiment, load_registry, parse_seeds
from lightning_models.util import quiet_logs

ROOT = ledger.ROOT
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def select(experiments: list[Experiment], text: str | None) -> list[Experiment]:
    names = {part.strip() for part in (text or "").split(",") if part.strip()}
    groups = sorted({e.group for e in experiments})
    if unknown := sorted(names - {e.name for e in experiments} - set(groups)):
        raise SystemExit(f"error: --only: unknown {', '.join(unknown)}; choose from groups {', '.join(groups)} "
                         f"or experiments {', '.join(e.name for e in experiments)}")
    return [e for e in experiments if not names or e.name in names or e.group in names]


def run_one(config: Path, options: list[str]):  # -> lightning_models.RunResult
    from lightning_models import run

    with contextlib.redirect_stdout(io.StringIO()), quiet_logs():
        return run(config, *QUIET, *options)


def machine(accelerator: str) -> tuple[str, str]:
    """(CPU kind, the machine in words: no path, no host name)."""
    from lightning_models.machine import cpu_info

    kind = ledger.cpu_kind("cpu" if accelerator == "cpu" else "auto")
    return kind, kind.split(" (")[0].removeprefix("cuda ") if kind.startswith("cuda") else f"{cpu_info()[0]}, {os.cpu_count()} cores"


def revision() -> str:
    from lightning_models.machine import code_record

    code = code_record()
    return "unknown" if code is None else code["commit"][:7] + ("+changes" if code["dirty"] else "")


def work(e: Experiment, kind: str, seed: int, args: argparse.Namespace, threads: int | None, runner=run_one) -> dict:
    """One run and its record; ``threads``: torch's intra-op threads for it (None: as they are)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads := threads or before)
    options = ledger.run_options(e, kind, seed, args.quick, args.vary_split)
    started = time.perf_counter()
    try:
        result = runner(e.config(kind), [f"--trainer.accelerator={args.accelerator}", *e.data_overrides(args.data_dir), *options])
    finally:
        torch.set_num_threads(before)
    cpu_kind, where = machine(args.accelerator)
    folder = Path(result.folder).resolve()
    return {"experiment": e.name, "kind": kind, "seed": seed, "fingerprint": ledger.fingerprint(e, kind, options),
            "metrics_version": ledger.METRICS_VERSION, "options": options,
            "metrics": {k: float(v) for block in result.metrics.values() for k, v in block.items()},
            "wall_time_s": round(time.perf_counter() - started, 1), "epochs": result.record.get("epochs"),
            "global_step": result.record.get("global_step"), "precision": result.record.get("precision", "32-true"),
            "cpu_kind": cpu_kind, "machine": where, "threads": threads, "accelerator": args.accelerator,
            "commit": revision(), "date": time.strftime("%Y-%m-%d"), "versions": result.record.get("versions"),
            "run_dir": os.path.relpath(folder) if folder.is_relative_to(Path.cwd()) else None}


def plan(experiments: list[Experiment], args: argparse.Namespace, records: dict) -> list[tuple[Experiment, str, int]]:
    """The (experiment, kind, seed) runs that are missing or stale in ``records``."""
    jobs = []
    for e in experiments:
        if e.needs_data_dir and not args.data_dir:
            print(f"skipped {e.name}: it needs --data-dir")
            continue
        for kind in (k for k in ledger.KINDS if k == "default" or e.source_config):
            for seed in parse_seeds(args.seeds or ("0" if args.quick else e.seeds)):
                options = ledger.run_options(e, kind, seed, args.quick, args.vary_split)
                if (old := records.get((e.name, kind, seed))) is None or old["fingerprint"] != ledger.fingerprint(e, kind, options):
                    jobs.append((e, kind, seed))
    return jobs


def mixed_kinds(jobs: list, records: dict, here: str) -> str | None:
    """The first row whose fresh records and new runs would come from two CPU kinds, in words."""
    running = {(e.name, kind) for e, kind, _ in jobs}
    redone = {(e.name, kind, seed) for e, kind, seed in jobs}
    for name, kind in sorted(running):
        kept = {r["cpu_kind"] for key, r in records.items() if key[:2] == (name, kind) and key not in redone}
        if kept - {here}:
            return f"row {name} ({kind}) holds records of {', '.join(sorted(kept))}; this machine is {here}"
    return None


def estimate(job: tuple, records: dict, done: list[float]) -> float:
    old = records.get((job[0].name, job[1], job[2]))
    return old["wall_time_s"] if old else (sum(done) / len(done) if done else 10.0)


def execute(jobs: list, args: argparse.Namespace, runs: Path, records: dict, runner=run_one) -> None:
    """Every job, each record written as it finishes; a line per run with the estimated time left."""
    small, big = [j for j in jobs if not j[0].needs_data_dir], [j for j in jobs if j[0].needs_data_dir]
    left, done, started = list(jobs), [], time.perf_counter()

    def finished(job: tuple, record: dict) -> None:
        ledger.write(runs, record)
        left.remove(job)
        done.append(record["wall_time_s"])
        rest = sum(estimate(j, records, done) for j in left if not j[0].needs_data_dir) / max(1, args.jobs)
        rest += sum(estimate(j, records, done) for j in left if j[0].needs_data_dir)
        print(f"[{len(jobs) - len(left)}/{len(jobs)}] {job[0].name} {job[1]} seed {job[2]}: {record['wall_time_s']} s; "
              f"{(time.perf_counter() - started) / 60:.1f} min so far, about {rest / 60:.1f} min left", flush=True)

    if args.jobs > 1 and small and runner is run_one:
        pending, running = list(small), {}
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            while pending or running:
                for job in list(pending):  # never two runs of one row at once: they would pick the same run folder
                    if len(running) < args.jobs and (job[0].name, job[1]) not in {(j[0].name, j[1]) for j in running.values()}:
                        pending.remove(job)
                        running[pool.submit(work, *job, args, 1)] = job
                over, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in over:
                    finished(running.pop(future), future.result())
    else:
        big = small + big
    for job in big:
        finished(job, work(*job, args, None if job[0].needs_data_dir else 1, runner))


def write_report(out: Path, registry: list[Experiment]) -> dict:
    """``RESULTS.json`` and ``RESULTS.md`` in ``out`` from the records in ``out/runs``; the project's docs tables too."""
    data = ledger.results(registry, ledger.load(out / "runs"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "RESULTS.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "RESULTS.md").write_text(results_page(data, out))
    print(f"wrote {out / 'RESULTS.md'} and {out / 'RESULTS.json'} from {data['meta']['records']} records")
    return data


def output_folder(args: argparse.Namespace) -> Path:
    """``--out``; by default the project's ``reports`` for its registry, else a folder git ignores (quick, --vary-split)."""
    if args.out:
        return Path(args.out)
    project = Path(args.registry).resolve() == REGISTRY and not args.quick and not args.vary_split
    return ROOT / "reports" if project else Path("lightning_logs/reproduce")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help="comma-separated experiments or groups of the registry")
    parser.add_argument("--quick", action="store_true", help="2 epochs of at most 5 batches each: checks, not results")
    parser.add_argument("--data-dir", default=None, help="folder for experiments with needs_data_dir (holding FashionMNIST/raw/)")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (the GPU when there is one)")
    parser.add_argument("--seeds", default=None, help="seeds per row, e.g. 0-4 or 0,1,2 (default: the registry's; --quick: 0)")
    parser.add_argument("--registry", default=str(REGISTRY), help="the experiment registry (default: configs/experiments.yaml)")
    parser.add_argument("--out", default=None, help="folder for runs/ and RESULTS.md/.json (default: the project's reports/ for "
                        "its registry, else lightning_logs/reproduce/)")
    parser.add_argument("--vary-split", action="store_true", help="each seed also draws its own data split (default: one split)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="processes for the small experiments (default: every core)")
    parser.add_argument("--mix-cpu-kinds", action="store_true", help="let a row hold records of several CPU kinds")
    parser.add_argument("--plan", action="store_true", help="print what is missing or stale and its estimated time; run nothing")
    parser.add_argument("--update-readme", action="store_true", help="rewrite RESULTS.json/.md, README.md's and docs/results.md's "
                        "tables from the ledger")
    parser.add_argument("--check-readme", action="store_true", help="exit 1 when those tables differ from what --update-readme writes")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.registry)
        parse_seeds(args.seeds or "0")
    except ValueError as error:
        parser.error(str(error))
    out = output_folder(args)
    if args.update_readme or args.check_readme:
        if Path(args.registry).resolve() != REGISTRY:
            parser.error(f"--registry {args.registry}: the project's tables come from {ledger.shown_path(REGISTRY)}")
        if args.update_readme:
            write_report(out, registry)
        return check_tables(out / "RESULTS.json", ROOT / "README.md", ROOT / "docs" / "results.md", registry, update=args.update_readme)
    if args.data_dir and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir!r} is not a folder")
    if args.quick and out.resolve() == ROOT / "reports":
        parser.error("--quick runs are checks, not results: they never go into the project's reports/; give another --out")
    records = ledger.load(out / "runs")
    jobs = plan(select(registry, args.only), args, records)
    if (reason := mixed_kinds(jobs, records, machine(args.accelerator)[0])) and not args.mix_cpu_kinds:
        parser.exit(2, f"error: {reason}: run the whole row on one kind, or give --mix-cpu-kinds\n")
    serial = sum(estimate(job, records, []) for job in jobs)
    print(f"{len(jobs)} runs missing or stale in {out / 'runs'}; about {serial / 60:.1f} min serial, "
          f"{serial / max(1, args.jobs) / 60:.1f} min on {args.jobs} processes (from the earlier records' wall times)")
    if args.plan:
        for e, kind, seed in jobs:
            print(f"  {e.name} {kind} seed {seed}")
        return 0
    execute(jobs, args, out / "runs", records)
    write_report(out, registry)
    if out.resolve() == ROOT / "reports" and Path(args.registry).resolve() == REGISTRY:
        check_tables(out / "RESULTS.json", ROOT / "README.md", ROOT / "docs" / "results.md", registry, update=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
