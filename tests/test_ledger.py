"""The ledger of runs (reports/runs/, lab/ledger.py): every record current and with its provenance, the tables made
from it, and one small run of it re-run in every CI (the row rotates with the commit)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import time

import ledger
import reproduce
import yaml
from tables import check_tables, results_page

from lightning_models.training.experiments import EXPERIMENTS
from tests.conftest import ROOT


def freshness(experiments, records) -> list[str]:
    """What the freshness test reports: the stale rows (with the command that refreshes them) and the generated files
    that differ from the ledger."""
    failures = ledger.stale_rows(experiments, records)
    if failures:
        names = sorted({line.split()[0] for line in failures})
        failures.append(f"refresh them: {ledger.REFRESH} --only {','.join(names)}")
    data = ledger.results(experiments, records)
    if str(ROOT) in json.dumps(data):
        failures.append(f"reports/RESULTS.json holds this machine's path {ROOT}")
    if json.loads((ROOT / "reports" / "RESULTS.json").read_text()) != json.loads(json.dumps(data)):
        failures.append("reports/RESULTS.json differs from the ledger: python lab/reproduce.py --update-readme")
    if (ROOT / "reports" / "RESULTS.md").read_text() != results_page(data, ROOT / "reports"):
        failures.append("reports/RESULTS.md differs from the ledger: python lab/reproduce.py --update-readme")
    return failures


def test_the_ledger_is_current_and_the_tables_are_made_from_it():
    started = time.perf_counter()
    records = ledger.load()
    assert records, "no records in reports/runs/"
    assert freshness(EXPERIMENTS, records) == []
    assert check_tables(ROOT / "reports" / "RESULTS.json", ROOT / "README.md", ROOT / "docs" / "results.md", EXPERIMENTS, update=False) == 0
    assert time.perf_counter() - started < 2


def test_freshness_names_a_changed_config_a_bumped_code_version_a_missing_field_and_an_edited_table(tmp_path, monkeypatch):
    records = ledger.load()
    changed = next(e for e in EXPERIMENTS if e.name == "iris_mlp_classifier")
    config = yaml.safe_load(changed.default_config.read_text())
    config["model"]["init_args"]["optimizer"]["init_args"]["lr"] = 0.004
    (tmp_path / "iris_mlp_classifier.yaml").write_text(yaml.safe_dump(config))
    edited = [dataclasses.replace(e, default_config=tmp_path / "iris_mlp_classifier.yaml") if e is changed else e for e in EXPERIMENTS]
    failures = freshness(edited, records)
    assert [line.split(":")[0] for line in failures if "stale" in line] == ["iris_mlp_classifier default seed 0"], failures
    assert f"refresh them: {ledger.REFRESH} --only iris_mlp_classifier" in failures
    original = yaml.safe_load(changed.default_config.read_text())  # a comment or the logger moves no fingerprint
    original["trainer"]["logger"] = False
    (tmp_path / "iris_mlp_classifier.yaml").write_text("# a comment\n" + yaml.safe_dump(original))
    assert ledger.stale_rows(edited, records) == []

    monkeypatch.setattr(ledger, "METRICS_VERSION", ledger.METRICS_VERSION + 1)
    assert len([line for line in freshness(EXPERIMENTS, records) if "stale" in line]) == len(records)
    monkeypatch.undo()

    key = next(iter(records))
    bare = {**records, key: {k: v for k, v in records[key].items() if k != "commit"}}
    assert any(line.endswith("lacks commit") for line in freshness(EXPERIMENTS, bare))
    one_ulp = {**records, key: {**records[key], "metrics": {k: math.nextafter(v, 1) for k, v in records[key]["metrics"].items()}}}
    assert "reports/RESULTS.json differs from the ledger" in " ".join(freshness(EXPERIMENTS, one_ulp))


def ci_pick() -> dict:
    """The record re-run in this CI: one of the runs under 10 s, chosen by the commit, so each commit checks another."""
    small = sorted((r for r in ledger.load().values() if r["wall_time_s"] < 10 and r["experiment"] != "fashion_cnn"),
                   key=lambda r: (r["experiment"], r["kind"], r["seed"]))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() or "0"
    return small[int(commit, 16) % len(small)]


def test_one_small_run_of_the_ledger_is_run_again_and_gives_its_numbers(tmp_path, monkeypatch):
    """Bit for bit on the record's CPU kind; on another kind within ledger.mismatches' relative 1e-4."""
    record = ci_pick()
    e = next(e for e in EXPERIMENTS if e.name == record["experiment"])
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(quick=False, vary_split=False, accelerator="cpu", data_dir=None)
    started = time.perf_counter()
    again = reproduce.work(e, record["kind"], record["seed"], args, threads=1)
    print(f"re-ran {e.name} {record['kind']} seed {record['seed']} in {time.perf_counter() - started:.1f} s")
    assert again["fingerprint"] == record["fingerprint"]
    same = again["cpu_kind"] == record["cpu_kind"]
    assert ledger.mismatches(record, again["metrics"], same) == [], f"recorded on {record['cpu_kind']}, re-run on {again['cpu_kind']}"
    key, value = next(iter(sorted(record["metrics"].items())))
    nudged = {**record["metrics"], key: math.nextafter(value, math.inf)}  # one ulp off: a mismatch on the same kind
    assert ledger.mismatches(record, nudged, True) == [
        f"{e.name} {record['kind']} seed {record['seed']}: {key} recorded {value!r}, re-run {nudged[key]!r}"]
    assert ledger.mismatches(record, nudged, False) == []
