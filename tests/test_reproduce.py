"""scripts/reproduce.py in quick mode on the tabular and synthetic experiments, and the README table check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from scripts.reproduce import EXPERIMENTS, readme_check
from tests.conftest import ROOT


def test_quick_reproduce_writes_a_complete_report(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce.py"), "--quick", "--only", "iris,synthetic",
                           "--accelerator", "cpu", "--out", "reports"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "reports" / "RESULTS.json").read_text())
    wanted = [e.name for e in EXPERIMENTS if e.group in ("iris", "synthetic")]
    assert [row["name"] for row in report["experiments"]] == wanted
    assert report["meta"]["quick"] is True and report["meta"]["machine"]["torch"]
    for row in report["experiments"]:
        recipes = ["default"] + (["source"] if row["source_keys"] else [])
        for recipe in recipes:
            result = row[recipe]
            assert all(isinstance(v, float) for v in result["values"].values()), (row["name"], recipe, result)
            run_dir = Path(result["run_dir"])
            assert (tmp_path / "lightning_logs").resolve() in run_dir.parents
            assert (run_dir / "metrics.json").is_file()
        if row["sklearn_key"]:
            assert isinstance(row["default"]["sklearn"], float)
    table = (tmp_path / "reports" / "RESULTS.md").read_text()
    for name in wanted:  # one table row each, with numbers in its result cells and a run link
        line = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert re.fullmatch(r"-?\d+\.\d+( / -?\d+\.\d+)?", cells[6]), line
        assert "](../lightning_logs/" in cells[8]


def test_readme_results_table_is_the_committed_report(tmp_path):
    report = ROOT / "reports" / "RESULTS.json"
    assert readme_check(report, ROOT / "README.md", update=False) == 0
    # and the check notices a hand edit
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- results table")
    row = text.index("| `iris_mlp_classifier` |", start)
    number = re.search(r"\d\.\d{3}", text[row:])
    edited = text[: row + number.start()] + "0.123" + text[row + number.end():]
    (tmp_path / "README.md").write_text(edited)
    assert readme_check(report, tmp_path / "README.md", update=False) == 1


def test_only_replaces_its_rows_and_keeps_the_others(tmp_path):
    def reproduce(*options: str) -> dict:
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce.py"), "--quick", "--accelerator", "cpu",
                               "--out", "reports", *options], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((tmp_path / "reports" / "RESULTS.json").read_text())

    first = reproduce("--only", "xor_mlp,exp_linear_sgd")
    second = reproduce("--only", "exp_linear_sgd")
    rows = {row["name"]: row for row in second["experiments"]}
    assert list(rows) == ["exp_linear_sgd", "xor_mlp"]  # registry order
    kept = next(row for row in first["experiments"] if row["name"] == "xor_mlp")
    assert rows["xor_mlp"]["default"]["run_dir"] == kept["default"]["run_dir"]  # not re-run
    assert rows["exp_linear_sgd"]["default"]["run_dir"].endswith("version_1")  # re-run: a new version
    runs = [row["default"] for row in rows.values()]
    assert second["meta"]["total_wall_time_s"] == round(sum(run["wall_time_s"] for run in runs), 1)
    assert "`exp_linear_sgd`" in (tmp_path / "reports" / "RESULTS.md").read_text()
