"""The benchmark's measurement and report (lab/benchmark.py, docs/speed.md): timing a chunk, running sides interleaved
(round by round with a rotating order, or within one template fit by the ``Interleaved`` callback), the median of
per-chunk ratios with its seeded scipy.stats.bootstrap interval, the lines under a case's row of the printed table,
and the JSON file that keeps the other cases' records. It knows nothing of the cases themselves (lab/benchmark_cases.py).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import scipy.stats
import torch

Side = Callable[[], Callable[[], float]]  # prepare (untimed) -> run one chunk (timed) -> loss


def timed(function: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    loss = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss


def bootstrap_interval(ratios: list[float], level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``ratios`` (scipy's, seeded: the same ratios give the same interval)."""
    if len(set(ratios)) < 2:  # scipy returns NaN for a sample without spread; its interval is the value itself
        return (ratios[0], ratios[0]) if ratios else (float("nan"), float("nan"))
    found = scipy.stats.bootstrap((ratios,), np.median, confidence_level=level, n_resamples=resamples, method="percentile",
                                  random_state=seed)
    return float(found.confidence_interval.low), float(found.confidence_interval.high)


def pair_record(case: str, work: str, times: dict[str, list[float]], losses: dict[str, float]) -> dict:
    ratios = [t / p for t, p in zip(times["template"], times["plain"])]
    return {"case": case, "work": work, "template_s": sum(times["template"]), "plain_s": sum(times["plain"]),
            "ratio": statistics.median(ratios), "ratio_ci95": list(bootstrap_interval(ratios)), "chunks": len(ratios),
            "template_loss": losses["template"], "plain_loss": losses["plain"],
            "template_times": times["template"], "plain_times": times["plain"], "ratios": ratios}


def compare(case: str, work: str, sides: Callable[[], dict[str, Side]], chunks: int, samples: int = 0) -> dict:
    """Round r runs a chunk of every side, the order rotated by r (shared cores drift within minutes); a side's ratio
    is the median over rounds of its time / the first side's ("template" / "plain" for two sides)."""
    built = sides()
    names = list(built)
    times: dict[str, list[float]] = {name: [] for name in names}
    losses: dict[str, float] = {}
    for round_ in range(chunks):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            chunk = built[name]()
            torch.manual_seed(round_)  # the same dropout masks on every side
            seconds, losses[name] = timed(chunk)
            times[name].append(seconds)
    if names == ["template", "plain"]:
        return pair_record(case, work, times, losses)
    base = names[0]
    per_side = {name: [t / b for t, b in zip(times[name], times[base])] for name in names[1:]}
    record = {"case": case, "work": work, "template_s": sum(times[base]), "plain_s": None, "ratio": None,
              "chunks": chunks, "times": {name: statistics.median(values) for name, values in times.items()},
              "ratios_vs": base, "ratio_by_side": {name: statistics.median(r) for name, r in per_side.items()},
              "ratio_ci95_by_side": {name: list(bootstrap_interval(r)) for name, r in per_side.items()},
              "template_loss": losses[base], "plain_loss": None, "all_times": times}
    if samples:
        record["samples_per_s"] = {name: samples / seconds for name, seconds in record["times"].items()}
    return record


class Interleaved(pl.Callback):
    """Every ``chunk`` steps of one ``Trainer.fit``, stops the template's clock and runs a chunk of the plain loop; torch's
    random state is swapped at each switch, so each side draws the dropout masks it would draw alone."""

    def __init__(self, plain: Callable[[], float], chunk: int) -> None:
        self.plain, self.chunk = plain, chunk
        self.times: dict[str, list[float]] = {"template": [], "plain": []}
        self.plain_loss = float("nan")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.plain_state = torch.get_rng_state()  # both sides start from the same state
        self.mark = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, index: int) -> None:
        if index and index % self.chunk == 0:
            self.switch()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch()

    def switch(self) -> None:
        self.times["template"].append(time.perf_counter() - self.mark)
        with torch.random.fork_rng(devices=[]):  # the template's state comes back on leaving
            torch.set_rng_state(self.plain_state)
            seconds, self.plain_loss = timed(self.plain)
            self.plain_state = torch.get_rng_state()
        self.times["plain"].append(seconds)
        self.mark = time.perf_counter()


def details(r: dict) -> list[str]:
    """The lines under a case's row of the table."""
    lines = [f"{name:<22} {r['samples_per_s'][name]:>8.0f} samples/s, time vs {r['ratios_vs']} {value:.3f} "
             f"[{r['ratio_ci95_by_side'][name][0]:.3f}, {r['ratio_ci95_by_side'][name][1]:.3f}]"
             for name, value in r.get("ratio_by_side", {}).items()]
    if "overhead_ms_per_step" in r:
        lines.append(f"template overhead {r['overhead_ms_per_step']:.2f} ms/step [{r['overhead_ms_ci95'][0]:.2f}, "
                     f"{r['overhead_ms_ci95'][1]:.2f}] over the plain loop's {r['plain_ms_per_step']:.2f} ms (batch {r['batch_size']})")
    if r["case"] == "fashion_precision":
        lines.append(f"{r['ratios_vs']:<22} {r['samples_per_s'][r['ratios_vs']]:>8.0f} samples/s (CPU with native bf16: {r['cpu_bf16']})")
    if r["case"] == "image_folder_vs_fashion":
        lines.append(f"image folder set-up {r['folder_setup_s']:.1f} s; per-step time at most 5% over the IDX path's "
                     f"(interval's upper end <= 1.05): {'met' if r['no_slower_than_5_percent'] else 'not met'}")
    if r["case"] == "time_to_accuracy":
        lines.append(f"precision {r['precision']}; CPU {r['cpu']} (native bf16: {r['cpu_native_bf16']})")
        lines += [f"seed {x['seed']}: val/acc >= {r['threshold']} " + (f"at epoch {x['epoch']}, {x['seconds']:.1f} s" if x["reached"]
                  else "not reached") + f"; {x['epochs']} epochs in {x['train_s']:.1f} s; best checkpoint's test/acc {x['test_acc']:.4f}"
                  for x in r["runs"]]
        lines.append(f"test/acc {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} over {len(r['runs'])} seed(s)")
    return lines


def write_json(path: Path, meta: dict, results: list[dict]) -> None:
    """Each case's new record, dated with its CPU kind and commit, under ``cases``; the one it replaces moves to the end
    of ``history[case]``, so no measurement is lost."""
    import ledger
    import reproduce

    old = json.loads(path.read_text()) if path.is_file() else {"meta": {}, "cases": []}
    history = old.get("history", {})
    stamp = {"date": time.strftime("%Y-%m-%d"), "cpu_kind": ledger.cpu_kind("cuda" if torch.cuda.is_available() else "cpu"),
             "machine": reproduce.machine("auto")[1], "commit": reproduce.revision(), **meta}
    new = {r["case"]: {**stamp, **r} for r in results}
    for r in old["cases"]:
        if r["case"] in new:
            history.setdefault(r["case"], []).append(r)
    cases = [new.pop(r["case"], r) for r in old["cases"]] + list(new.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": {"note": "cases: each case's latest record; history: the ones they replaced, oldest first"},
                                "cases": cases, "history": history}, indent=2) + "\n")
