"""The benchmark script in quick mode, so it cannot rot (its timings are not asserted)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_benchmark_quick_mode_writes_comparable_records(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick", "--cases", "iris",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())["cases"][0]
    assert record["case"] == "iris_full_batch"
    assert {"template_s", "plain_s", "ratio", "template_loss", "plain_loss"} <= set(record)
    assert record["ratio"] == pytest.approx(record["template_s"] / record["plain_s"])
    # identical starting weights and updates: the same final loss on both sides
    assert record["template_loss"] == pytest.approx(record["plain_loss"], rel=1e-5)
    assert "iris_full_batch" in done.stdout
