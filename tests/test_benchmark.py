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


def test_compare_alternates_the_order_and_takes_the_median_ratio(monkeypatch):
    """A drifting machine must not be charged to one side: the first side alternates per
    repetition and the ratio is the median of the per-repetition ratios."""
    from scripts import benchmark

    calls: list[str] = []
    durations = iter([2.0, 1.0, 1.0, 4.0, 3.0, 1.0])  # per call, in call order
    clock = [0.0]

    def side(name: str):
        def run() -> float:
            calls.append(name)
            clock[0] += next(durations)
            return 0.5
        return run

    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(benchmark, "REPEATS", 3)
    record = benchmark.compare("fake", "work", lambda: (side("template"), side("plain")))
    assert calls == ["template", "plain", "plain", "template", "template", "plain"]
    assert record["template_times"] == [2.0, 4.0, 3.0] and record["plain_times"] == [1.0, 1.0, 1.0]
    assert record["ratio"] == pytest.approx(3.0)  # median of 2, 4, 3
    assert record["template_s"] == pytest.approx(3.0) and record["plain_s"] == pytest.approx(1.0)
