"""The ledger of runs: one JSON record per (experiment, config kind, seed) in ``reports/runs/``, and its rows.

A record is fresh while its fingerprint is the current one: a hash of what decides its numbers, the config as parsed
(``configs/defaults.yaml``, the experiment's config and the options the lab adds; data paths, the logger and other
settings that move no metric left out) and ``METRICS_VERSION``. ``RESULTS.json`` and the tables are made from
the records alone, so they are the same on every machine.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import yaml

from lightning_models.training.experiments import Experiment
from lightning_models.util import mean_spread
from lightning_models.workflows.seeds import seed_options

# The version of the code that decides metrics. Bump it in the change that moves a metric of any run (a fix, a new
# default in code): every record goes stale. A refactor that moves no metric leaves it, and the ledger stays current.
METRICS_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "reports" / "runs"
KINDS = ("source", "default")
QUICK = ["--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1", "--trainer.limit_train_batches=5",
         "--trainer.limit_val_batches=5", "--trainer.limit_test_batches=5"]
# config keys that move no metric: the run folder's name, where logs and checkpoints go, what is printed
IGNORED = {"experiment_name", "progress_bar", "last_checkpoint", "trainer.logger", "trainer.enable_progress_bar",
           "trainer.enable_model_summary", "data.init_args.data_dir"}
PROVENANCE = ("experiment", "kind", "seed", "fingerprint", "metrics_version", "metrics", "wall_time_s", "precision",
              "cpu_kind", "machine", "commit", "date", "versions", "threads")
REFRESH = "python lab/reproduce.py --data-dir ../shared/data"


def shown_path(path: str | Path) -> str:
    """A path inside the project relative to it (``configs/x.yaml``), any other as it is."""
    path = Path(path)
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def run_options(e: Experiment, kind: str, seed: int, quick: bool = False, vary_split: bool = False) -> list[str]:
    """The options the lab adds to the config for one run (data paths apart: ``Experiment.data_overrides``)."""
    return [*(QUICK + list(e.quick_overrides) if quick else []), *seed_options(seed, e.config(kind), vary_split)]


def resolved(e: Experiment, kind: str, options: list[str]) -> dict:
    """The config as parsed: defaults, the experiment's file and the options, less the keys in ``IGNORED``."""
    def dotted(tree: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in tree.items():
            name = prefix + str(key)
            if name not in IGNORED:
                flat.update(dotted(value, name + ".") if isinstance(value, dict) else {name: value})
        return flat

    config = {**dotted(yaml.safe_load((ROOT / "configs" / "defaults.yaml").read_text())),
              **dotted(yaml.safe_load(e.config(kind).read_text()))}
    for option in options:
        key, _, value = option.removeprefix("--").partition("=")
        if key not in IGNORED:
            config[key] = yaml.safe_load(value)
    return config


def fingerprint(e: Experiment, kind: str, options: list[str]) -> str:
    text = json.dumps({"config": resolved(e, kind, options), "metrics_version": METRICS_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def path_of(runs: Path, name: str, kind: str, seed: int) -> Path:
    return runs / f"{name}.{kind}.seed{seed}.json"


def load(runs: Path = RUNS) -> dict[tuple[str, str, int], dict]:
    records = [json.loads(path.read_text()) for path in sorted(runs.glob("*.json"))]
    return {(r["experiment"], r["kind"], r["seed"]): r for r in records}


def write(runs: Path, record: dict) -> None:
    """One record, written whole or not at all (a kill leaves the previous one)."""
    runs.mkdir(parents=True, exist_ok=True)
    path = path_of(runs, record["experiment"], record["kind"], record["seed"])
    path.with_suffix(".tmp").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    path.with_suffix(".tmp").replace(path)


def cpu_kind(device: str = "cpu") -> str:
    """What a CPU result's bits depend on: the vector extension torch's kernels use and the vendor (``cpu AVX2 AMD``);
    a GPU's name."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"cuda {torch.cuda.get_device_name()} ({'.'.join(map(str, torch.cuda.get_device_capability()))})"
    return f"cpu {torch.backends.cpu.get_cpu_capability()} {cpu_vendor()}"


def cpu_vendor() -> str:
    """AMD or Intel (their BLAS kernels may differ in the last bits at one vector extension), else "unknown"."""
    try:
        found = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("vendor_id"))
    except (OSError, StopIteration):
        return "unknown"
    vendor = found.split(":", 1)[1].strip()
    return {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(vendor, vendor)


def problems(e: Experiment, kind: str, seed: int, record: dict | None) -> str | None:
    """Why ``record`` is not the current run of (e, kind, seed): missing, lacking provenance, or stale."""
    if record is None:
        return "missing"
    if lacking := [key for key in PROVENANCE if record.get(key) in (None, "", {})]:
        return f"lacks {', '.join(lacking)}"
    if record["fingerprint"] != (now := fingerprint(e, kind, run_options(e, kind, seed))):
        return f"stale: fingerprint {record['fingerprint']} there, {now} now (its config or METRICS_VERSION changed)"
    return None


def summarize(per_seed: dict[str, list[float | None]]) -> dict:
    """Mean, sample std (n - 1; None for one seed: no spread is claimed), n, min and max of each key over seeds."""
    out: dict[str, dict] = {"values": {}, "std": {}, "n": {}, "min": {}, "max": {}}
    for key, values in per_seed.items():
        found = [v for v in values if v is not None]
        mean, spread = mean_spread(found) if found else (None, math.nan)
        out["values"][key], out["std"][key] = mean, None if math.isnan(spread) else spread
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


def block(e: Experiment, kind: str, records: list[dict]) -> dict:
    """One cell of a row: the records of (e, kind) over their seeds."""
    keys = e.source_keys if kind == "source" else e.default_keys
    per_seed = {key: [r["metrics"].get(key) for r in records] for key in keys}
    sklearn = summarize({"s": [r["metrics"].get(e.sklearn_key) for r in records]})["values"]["s"] if e.sklearn_key else None
    return {**summarize(per_seed), "per_seed": per_seed, "seeds": [r["seed"] for r in records], "sklearn": sklearn,
            "wall_time_s": round(sum(r["wall_time_s"] for r in records), 1), "wall_times_s": [r["wall_time_s"] for r in records],
            "epochs": records[0]["epochs"], "global_step": records[0]["global_step"],
            "run_dir": records[0].get("run_dir"), "run_dirs": [r.get("run_dir") for r in records], "config": shown_path(e.config(kind)),
            **{key: ", ".join(sorted({r.get(key, "unknown") for r in records})) for key in ("date", "commit", "cpu_kind")},
            "migrated": sorted({r["migrated"] for r in records if r.get("migrated")})}


def results(experiments: list[Experiment], records: dict[tuple[str, str, int], dict]) -> dict:
    """``RESULTS.json`` from the records alone: a row per experiment, each kind's seeds in seed order."""
    rows = []
    for e in experiments:
        entry = {key: shown_path(value) if key.endswith("_config") and value else value for key, value in e.record().items()}
        row = {"experiment": e.name, **entry, "source": None, "default": None}  # no path of this machine
        for kind in KINDS:
            found = sorted((r for (name, k, _), r in records.items() if name == e.name and k == kind), key=lambda r: r["seed"])
            row[kind] = block(e, kind, found) if found else None
        row["verdict"], row["verdict_reason"] = verdict(e, row["source" if e.source_config else "default"])
        rows.append(row)
    used = [r for r in records.values() if r["experiment"] in {e.name for e in experiments}]
    meta = {"generated_from": "the records in runs/ beside this file (lab/ledger.py)", "metrics_version": METRICS_VERSION,
            "records": len(used), "total_wall_time_s": round(sum(r["wall_time_s"] for r in used), 1),
            "dates": sorted({r.get("date", "unknown") for r in used}), "commits": sorted({r.get("commit", "unknown") for r in used}),
            "cpu_kinds": sorted({r.get("cpu_kind", "unknown") for r in used}),
            "machines": sorted({r.get("machine", "unknown") for r in used}),
            "versions": sorted({json.dumps(r["versions"], sort_keys=True) for r in used})}
    return {"meta": meta, "experiments": rows}


def stale_rows(experiments: list[Experiment], records: dict[tuple[str, str, int], dict]) -> list[str]:
    """One line per record that is stale, lacks provenance or names no experiment of the registry."""
    by_name = {e.name: e for e in experiments}
    found = {key: problems(by_name[key[0]], *key[1:], r) if key[0] in by_name else "no such experiment"
             for key, r in sorted(records.items())}
    return [f"{name} {kind} seed {seed}: {why}" for (name, kind, seed), why in found.items() if why]


def mismatches(record: dict, metrics: dict[str, float], same_kind: bool, tolerance: float = 1e-4) -> list[str]:
    """The recorded metrics a re-run did not give back: bit for bit on the record's CPU kind, else within a relative
    ``tolerance`` (another kind's vector unit rounds differently; its last bits grow over the updates)."""
    def differs(value: float, got: float | None) -> bool:
        return got is None or (got != value if same_kind else abs(got - value) > tolerance * max(abs(value), 1e-12))

    row = f"{record['experiment']} {record['kind']} seed {record['seed']}"
    return [f"{row}: {key} recorded {value!r}, re-run {metrics.get(key)!r}" for key, value in sorted(record["metrics"].items())
            if differs(value, metrics.get(key))]
