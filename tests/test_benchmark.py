"""lab/benchmark.py in quick mode, so it cannot rot (its timings are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_benchmark_quick_mode_writes_comparable_records(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "lab" / "benchmark.py"), "--quick", "--cases", "iris",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())["cases"][0]
    assert record["case"] == "iris_full_batch"
    assert {"template_s", "plain_s", "ratio", "ratio_ci95", "template_loss", "plain_loss"} <= set(record)
    assert record["chunks"] == 2 and len(record["ratios"]) == 2
    assert record["ratios"] == pytest.approx([t / p for t, p in zip(record["template_times"], record["plain_times"])])
    assert record["ratio_ci95"][0] <= record["ratio"] <= record["ratio_ci95"][1]
    # identical starting weights and updates: the same final loss on both sides
    assert record["template_loss"] == pytest.approx(record["plain_loss"], rel=1e-5)
    assert "iris_full_batch" in done.stdout


def test_compare_interleaves_chunks_and_reports_the_median_ratio_with_a_bootstrap_interval(monkeypatch):
    """A drifting machine must not be charged to one side: the sides alternate chunk by chunk, the
    first side rotating each round; the ratio is the median of per-round ratios."""
    import benchmark_stats as benchmark

    calls: list[str] = []
    durations = iter([2.0, 1.0, 1.0, 4.0, 3.0, 1.0, 1.0, 2.5, 2.0, 1.0])  # per chunk, in call order
    clock = [0.0]

    def side(name: str):
        def prepare():
            def run() -> float:
                calls.append(name)
                clock[0] += next(durations)
                return 0.5
            return run
        return prepare

    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock[0])
    record = benchmark.compare("fake", "work", lambda: {"template": side("template"), "plain": side("plain")}, chunks=5)
    assert calls == ["template", "plain", "plain", "template", "template", "plain", "plain", "template", "template", "plain"]
    assert record["template_times"] == [2.0, 4.0, 3.0, 2.5, 2.0] and record["plain_times"] == [1.0, 1.0, 1.0, 1.0, 1.0]
    assert record["ratios"] == [2.0, 4.0, 3.0, 2.5, 2.0]
    assert record["ratio"] == pytest.approx(2.5)  # median of the per-round ratios
    low, high = record["ratio_ci95"]
    assert 2.0 <= low <= 2.5 <= high <= 4.0 and high > low
    assert record["template_s"] == pytest.approx(13.5) and record["plain_s"] == pytest.approx(5.0)


def test_bootstrap_interval_is_seeded_and_narrows_with_more_rounds():
    import random
    import statistics

    from benchmark_stats import bootstrap_interval

    generator = random.Random(1)
    few = [1.0 + generator.gauss(0, 0.1) for _ in range(6)]
    many = [1.0 + generator.gauss(0, 0.1) for _ in range(200)]
    assert bootstrap_interval(few) == bootstrap_interval(few)  # seeded
    low, high = bootstrap_interval(many)
    assert low < statistics.median(many) < high and high - low < 0.06  # ~ 2 x 1.96 x 1.25 x 0.1 / sqrt(200)
    few_low, few_high = bootstrap_interval(few)
    assert few_high - few_low > high - low
    assert bootstrap_interval([1.2] * 5) == (1.2, 1.2)


@pytest.mark.slow
def test_fashion_cases_in_quick_mode_on_tiny_idx_files(tmp_path):
    """The Fashion-MNIST cases run end to end on files the test writes: the in-fit interleaving does the
    same work on both sides of the tensor-loop case (equal losses), and the image-folder case writes the
    training images as PNGs under the class names and reads them back through its cache."""
    from tests.helpers import write_idx

    data = write_idx(tmp_path / "tiny", train=400, test=64)
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "lab" / "benchmark.py"), "--quick", "--cases", "fashion,data,overhead_batch_16",
                           "--data-dir", str(data), "--work-dir", str(tmp_path / "work"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    records = {record["case"]: record for record in json.loads(out.read_text())["cases"]}
    assert set(records) == {"fashion_vs_source_loop", "fashion_vs_tensor_loop", "image_folder_vs_fashion", "overhead_batch_16"}
    small = records["overhead_batch_16"]  # the same comparison at batch 16: same work, its cost per step in ms
    assert small["template_loss"] == pytest.approx(small["plain_loss"], rel=1e-6) and small["batch_size"] == 16
    steps = 2  # quick mode's chunk
    extra = sorted((t - p) / steps * 1000 for t, p in zip(small["template_times"], small["plain_times"]))
    assert small["overhead_ms_per_step"] == pytest.approx((extra[0] + extra[1]) / 2)  # the median of two
    for case in ("fashion_vs_source_loop", "fashion_vs_tensor_loop"):
        record = records[case]
        assert record["chunks"] == 2 == len(record["template_times"]) == len(record["plain_times"])  # 3, less the warm-up
        assert record["ratios"] == pytest.approx([t / p for t, p in zip(record["template_times"], record["plain_times"])])
    tensor = records["fashion_vs_tensor_loop"]  # same weights, batches, dropout masks and updates on both sides
    assert tensor["template_loss"] == pytest.approx(tensor["plain_loss"], rel=1e-6)
    folder = tmp_path / "work" / "fashion-train-400"
    pngs = sorted(folder.glob("*/*.png"))
    assert len(pngs) == 400 and len({path.parent.name for path in pngs}) == 10
    assert (folder / ".template-cache").is_dir()
    assert set(records["image_folder_vs_fashion"]["ratio_by_side"]) == {"image_folder"}


@pytest.mark.slow
def test_time_to_accuracy_reports_the_first_validation_at_the_threshold(tmp_path, monkeypatch, capsys):
    """Quick mode on tiny IDX files, two seeds: the reported epoch and seconds are those of the first validation whose
    val/acc, read back from the run's TensorBoard events, reaches the threshold; precision, CPU and test accuracy are
    the run's own; the record joins an existing JSON file beside the other cases' records."""
    import logging
    import statistics

    import benchmark
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_models.machine import cpu_info
    from tests.helpers import write_idx

    monkeypatch.chdir(tmp_path)
    data = write_idx(tmp_path / "tiny", train=400, test=64)
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"meta": {"quick": True}, "cases": [{"case": "iris_full_batch", "ratio": 1.0}]}))
    threshold = 0.1
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    try:  # in this process: main quietens Lightning's loggers, which other tests may read
        benchmark.main(["--quick", "--cases", "time_to_accuracy", "--data-dir", str(data), "--seeds", "0,1",
                        "--threshold", str(threshold), "--json", str(out)])
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    cases = json.loads(out.read_text())["cases"]
    assert [case["case"] for case in cases] == ["iris_full_batch", "time_to_accuracy"] and cases[0]["ratio"] == 1.0
    record = cases[1]
    assert [run["seed"] for run in record["runs"]] == [0, 1] and record["threshold"] == threshold
    assert record["cpu"] == cpu_info()[0]
    printed = capsys.readouterr().out
    for run in record["runs"]:
        folder = Path(run["run_dir"])
        metrics = json.loads((folder / "metrics.json").read_text())
        logged = []  # one per epoch (the config validates every epoch); the validation after fit has final_val/* tags
        for path in folder.glob("events.out.tfevents.*"):
            events = EventAccumulator(str(path), size_guidance={"scalars": 0}).Reload()
            logged += events.Scalars("val/acc") if "val/acc" in events.Tags()["scalars"] else []
        logged = sorted(logged, key=lambda event: event.step)
        assert [round(event.value, 6) for event in logged] == [round(v["val_acc"], 6) for v in run["validations"]]
        first = next((epoch for epoch, event in enumerate(logged, 1) if event.value >= threshold), None)
        assert run["reached"] == (first is not None) and run["epoch"] == first
        assert run["epochs"] == len(logged) == 4 and 0 < run["validations"][0]["seconds"] <= run["train_s"]
        if first is not None:  # seconds since the start of training: the events' own clock between validations agrees
            assert run["seconds"] == run["validations"][first - 1]["seconds"]
            assert run["seconds"] - run["validations"][0]["seconds"] == pytest.approx(
                logged[first - 1].wall_time - logged[0].wall_time, abs=1.0)
            assert f"seed {run['seed']}: val/acc >= {threshold} at epoch {first}, {run['seconds']:.1f} s" in printed
        else:
            assert run["seconds"] is None and f"seed {run['seed']}: val/acc >= {threshold} not reached" in printed
        assert run["test_acc"] == metrics["test"]["test/acc"] and metrics["checkpoints"]["best"]  # the best checkpoint's
        assert run["precision"] == yaml.safe_load((folder / "config.yaml").read_text())["trainer"]["precision"]
    accuracies = [run["test_acc"] for run in record["runs"]]
    assert record["test_acc_mean"] == pytest.approx(statistics.fmean(accuracies))
    assert record["test_acc_std"] == pytest.approx(statistics.stdev(accuracies))


def test_a_case_run_again_keeps_its_earlier_record_in_its_history(tmp_path):
    from benchmark_stats import write_json

    out = tmp_path / "bench.json"
    write_json(out, {"quick": True}, [{"case": "a", "ratio": 1.0}])
    write_json(out, {"quick": False}, [{"case": "a", "ratio": 2.0}, {"case": "b", "ratio": 3.0}])
    data = json.loads(out.read_text())
    assert [(case["case"], case["ratio"], case["quick"]) for case in data["cases"]] == [("a", 2.0, False), ("b", 3.0, False)]
    assert [(record["ratio"], record["quick"]) for record in data["history"]["a"]] == [(1.0, True)]
    assert all(case["date"] and case["cpu_kind"] and case["commit"] for case in data["cases"])
