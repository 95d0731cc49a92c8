"""lab/gpu_check.py: its plan, its summary page, the variants it times per GPU kind, and its dry run (the parts a CPU
can run, on tiny files)."""

from __future__ import annotations

import argparse
import json

import gpu_check
import pytest

from tests.conftest import fake_machine


@pytest.mark.parametrize(("gpu", "precisions"), [("A100", ["32-true", "16-mixed", "bf16-mixed"]), ("T4", ["32-true", "16-mixed"])])
def test_the_step_times_cover_each_native_precision_with_and_without_compile(monkeypatch, gpu, precisions):
    fake_machine(monkeypatch, {"avx2"}, gpu)
    timed = gpu_check.variants(argparse.Namespace(device="cuda"))
    assert timed[:-1] == [(precision, compiled, False) for precision in precisions for compiled in (False, True)]
    assert timed[-1] == (precisions[-1], False, True)  # the auto precision, with the progress bar
    assert gpu_check.variants(argparse.Namespace(device="cpu")) == [("32-true", False, False), ("32-true", False, True)]


def test_without_a_gpu_the_check_refuses_in_one_line_and_names_the_dry_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        gpu_check.main(["--out", str(tmp_path), "--data-dir", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and error == ["error: no CUDA device here; run with --dry-run to see the plan and run its CPU parts."]


def test_the_summary_tabulates_the_step_times_and_keeps_every_other_check_on_a_line():
    report = {"when": "2026-12-07 10:00", "dry_run": False, "checks": {
        "auto": {"describe": "GPU: Tesla T4", "auto_precision": "16-mixed"},
        "step_time": [{"precision": "16-mixed", "compile": True, "progress_bar": False, "ms_per_step": 3.25, "warmup_s": 41.0,
                       "gpu_utilisation_pct": 97.5}],
        "resume": {"error": "RuntimeError: boom"}}}
    page = gpu_check.summary(report)
    assert "| 16-mixed | True | False | 3.25 | 41.0 | 97.5 |" in page and "GPU: Tesla T4" in page
    assert '- **resume**: `{"error": "RuntimeError: boom"}`' in page and "on the GPU" in page


@pytest.mark.slow
def test_the_dry_run_lists_every_check_and_runs_the_cpu_parts(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "check"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for name, _, on_cpu, _ in gpu_check.CHECKS:
        assert f"{name}: " in out and ("(GPU only: skipped)" in out.split(f"{name}: ")[1].splitlines()[0]) != on_cpu
    report = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    checks = report["checks"]
    assert report["dry_run"] and sorted(checks) == sorted(name for name, _, on_cpu, _ in gpu_check.CHECKS if on_cpu)
    assert checks["auto"]["root_device"] == "cpu" and checks["auto"]["machine"]["gpu"] is None
    assert [row["progress_bar"] for row in checks["step_time"]] == [False, True]
    assert all(row["ms_per_step"] > 0 for row in checks["step_time"])
    assert checks["time_to_accuracy"]["runs"][0]["epochs"] == 4
    assert checks["predict_export_serve"]["predict"]["returncode"] == checks["predict_export_serve"]["export"]["returncode"] == 0
    assert checks["resume"]["returncodes"] == {"whole": 0, "killed": -9, "killed resumed": 0} and checks["resume"]["same_metrics"]
    assert (tmp_path / "check" / "gpu_check.md").read_text().startswith("# GPU check")
