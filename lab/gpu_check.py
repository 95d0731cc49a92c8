"""What only a GPU can settle, in one command: ``out/gpu_check.json`` and ``out/gpu_check.md`` (docs/speed.md).

    python lab/gpu_check.py --out reports/gpu --data-dir ../shared/data    # about 8 minutes on one GPU
    python lab/gpu_check.py --out /tmp/gpu-check --dry-run                 # the plan; its CPU-runnable parts on this CPU

The checks are ``CHECKS`` below; ``--dry-run`` lists them, runs those a CPU can on tiny files and writes both files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import benchmark_cases
import pytorch_lightning as pl
import torch
from PIL import Image
from torchvision.datasets import FashionMNIST

from datamodules.fashion_mnist import prepare_raw_files
from lightning_models import build
from lightning_models.machine import auto_precision, describe, gpu_facts, machine_record

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "fashion_cnn.yaml"
QUIET = ["--last_checkpoint=null", "--trainer.enable_model_summary=false", "--trainer.limit_val_batches=0",
         "--trainer.max_epochs=1000"]  # the default's logger and callbacks stay: a step costs what it costs in a run
DEVICE_TESTS = ["tests/test_precision.py", "tests/test_devices.py", "tests/test_rank_randomness.py", "tests/test_prediction_safety.py"]


class KillAt(pl.Callback):
    """SIGKILLs its process before batch ``batch`` of epoch ``epoch`` (the resume check's crash)."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)


class StepClock(pl.Callback):
    """Times steps ``warmup`` to ``warmup + steps`` (one device sync at each end, none between), samples the GPU's
    utilisation meanwhile and, with ``syncs``, counts the host syncs torch's sync debug mode reports in that window."""

    def __init__(self, warmup: int, steps: int, syncs: bool = False) -> None:
        self.warmup, self.steps, self.syncs, self.record = warmup, steps, syncs, {}
        self.samples, self.caught = [], None  # utilisation samples; the warnings caught while counting syncs

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            self.record["warmup_s"] = time.perf_counter() - self.fit_started
            torch.cuda.synchronize() if torch.cuda.is_initialized() else None
            self.started, self.sampling = time.perf_counter(), True
            threading.Thread(target=self.sample, daemon=True).start()
            if self.syncs:
                self.caught = warnings.catch_warnings(record=True)
                self.warnings = self.caught.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup + self.steps:
            torch.cuda.synchronize() if torch.cuda.is_initialized() else None
            self.record["ms_per_step"] = 1000 * (time.perf_counter() - self.started) / self.steps
            self.sampling = False
            if self.caught is not None:
                torch.cuda.set_sync_debug_mode(0)
                self.record["host_syncs_per_step"] = sum("synchroniz" in str(w.message) for w in self.warnings) / self.steps
                self.caught.__exit__(None, None, None)
            self.record["gpu_utilisation_pct"] = sum(self.samples) / len(self.samples) if self.samples else None
            trainer.should_stop = True

    def sample(self) -> None:
        while self.sampling and torch.cuda.is_available():
            with contextlib.suppress(Exception):  # no pynvml and no nvidia-smi: no samples
                self.samples.append(float(torch.cuda.utilization()) if find_spec("pynvml") else float(subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                    capture_output=True, text=True, timeout=5).stdout.split()[0]))
            time.sleep(0.2)


def write_tiny(folder: Path, train: int = 160, test: int = 32) -> Path:
    """Fashion-MNIST IDX files of random images (the dry run's data); returns the ``data_dir``."""
    raw, generator = folder / "FashionMNIST" / "raw", torch.Generator().manual_seed(0)
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images = torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, count, 28, 28) + images.numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count) + bytes(i % 10 for i in range(count)))
    return folder


def resolved(args: argparse.Namespace) -> dict:
    trainer = build(CONFIG, *args.data, *QUIET).trainer
    return {"describe": describe(), "auto_precision": auto_precision(), "devices": trainer.num_devices,
            "strategy": type(trainer.strategy).__name__, "root_device": str(trainer.strategy.root_device),
            "machine": machine_record(trainer.strategy.root_device, trainer)}


def variants(args: argparse.Namespace) -> list[tuple[str, bool, bool]]:
    """(precision, compile, progress bar): each native precision with and without compile, and the auto precision
    with the progress bar; on the CPU (dry run) 32-bit only, without compile, which inductor takes minutes for here."""
    if args.device == "cpu":
        return [("32-true", False, False), ("32-true", False, True)]
    native = ["32-true", "16-mixed", *(["bf16-mixed"] if gpu_facts()["native_bf16"] else [])]
    return [(precision, compiled, False) for precision in native for compiled in (False, True)] + [(auto_precision(), False, True)]


def step_time(args: argparse.Namespace, precision: str, compiled: bool, bar: bool, syncs: bool = False) -> dict:
    warmup, steps = (2, 3) if args.device == "cpu" else (30, 300)
    parts = build(CONFIG, *args.data, *QUIET, f"--trainer.precision={precision}",
                  f"--trainer.enable_progress_bar={str(bar).lower()}", f"--trainer.max_steps={warmup + steps}")
    if compiled:
        parts.model.net.compile()
    clock = StepClock(warmup, steps, syncs)
    parts.trainer.callbacks.append(clock)
    parts.trainer.fit(parts.model, datamodule=parts.datamodule)
    return {"precision": precision, "compile": compiled, "progress_bar": bar, **clock.record}


def time_to_accuracy(args: argparse.Namespace) -> dict:
    quick = args.device == "cpu"  # the dry run: 4 epochs of 2 tiny batches
    record = benchmark_cases.time_to_accuracy(argparse.Namespace(quick=quick, seeds="0", threshold=0.93, data_dir=args.data_dir))
    args.run_dir = record["runs"][0]["run_dir"]
    return record


def script(name: str, *words: str, timeout: int = 600) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *words], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT / "lab")})
    return {"command": f"scripts/{name} {' '.join(words)}", "returncode": done.returncode,
            "seconds": round(time.perf_counter() - started, 2), "stderr_tail": done.stderr[-600:]}


def predict_export_serve(args: argparse.Namespace) -> dict:
    images = Path(args.out, "images")
    images.mkdir(parents=True, exist_ok=True)
    test = FashionMNIST(str(prepare_raw_files(Path(args.data_dir), download=False)), train=False)
    for index, image in enumerate(test.data[:8]):
        Image.fromarray(image.numpy()).save(images / f"{index}.png")
    record = {"predict": script("predict.py", args.run_dir, str(images), "--out", str(Path(args.out, "predictions.csv")),
                                "--device", args.device, "--no-progress"),
              "export": script("export.py", args.run_dir, "--format", "onnx", "--out", str(Path(args.out, "export")))}
    if not find_spec("fastapi"):
        return {**record, "serve": "skipped: pip install -e '.[serve]'"}
    with socket.socket() as probe:  # a port nothing listens on
        port = probe.bind(("127.0.0.1", 0)) or probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), args.run_dir, "--device", args.device,
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(120):
            with contextlib.suppress(OSError):
                health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read())
                break
            time.sleep(0.5)
        else:
            return {**record, "serve": {"error": "no answer on /health in 60 s"}}
        body = (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"0.png\"\r\nContent-Type: image/png\r\n\r\n"
                + (images / "0.png").read_bytes() + b"\r\n--x--\r\n")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", body, {"Content-Type": "multipart/form-data; boundary=x"})
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
        return {**record, "serve": {"health": health.get("status"), "prediction": answer["predictions"][0]}}
    finally:
        server.terminate()
        server.wait(timeout=30)


def resume(args: argparse.Namespace) -> dict:
    words = ["fit", "--config", str(CONFIG), *args.data, "--trainer.max_epochs=3",
             f"--trainer.limit_train_batches={3 if args.device == 'cpu' else 50}", "--data.init_args.augment_from_epoch=1",
             "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false"]
    kill = json.dumps({"class_path": "gpu_check.KillAt", "init_args": {"epoch": 2, "batch": 1}})
    folders, outcome = {name: Path(args.out, "resume", name) for name in ("whole", "killed")}, {}
    for name, extra in (("whole", []), ("killed", [f"--trainer.callbacks+={kill}"]), ("killed", ["--ckpt_path", "last"])):
        folders[name].mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *words, *extra], cwd=folders[name],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "lab")}, timeout=1200)
        outcome[f"{name}{' resumed' if 'last' in extra else ''}"] = done.returncode
    got, expected = (json.loads(next(folders[name].glob("lightning_logs/*/version_0/metrics.json")).read_text())
                     for name in ("killed", "whole"))
    return {"returncodes": outcome, "same_metrics": all(got[key] == expected[key] for key in ("train", "val", "test")),
            "largest_difference": max(abs(got[stage][key] - value) for stage in ("val", "test")
                                      for key, value in expected[stage].items())}


def device_tests(args: argparse.Namespace) -> dict:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-o", "addopts=", "-q", *DEVICE_TESTS],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    return {"returncode": done.returncode, "summary": done.stdout.strip().splitlines()[-1:]}


CHECKS = [  # (name, what it settles, runs on a CPU too, function)
    ("auto", "what precision: auto, the devices and the strategy resolve to; machine_record", True, resolved),
    ("step_time", "ms/step of the Fashion default per native precision, compile off/on, progress bar; GPU utilisation",
     True, lambda args: [step_time(args, *variant) for variant in variants(args)]),
    ("host_syncs", "host syncs per step (torch.cuda.set_sync_debug_mode), the auto precision", False,
     lambda args: step_time(args, auto_precision(), False, False, syncs=True)),
    ("time_to_accuracy", "seconds to 93% val/acc, configs/fashion_cnn.yaml as shipped (dry run: 4 tiny epochs)", True,
     time_to_accuracy),
    ("predict_export_serve", "scripts/predict.py and serve.py --device cuda, export.py --format onnx, on its checkpoint",
     True, predict_export_serve),
    ("resume", "a run SIGKILLed at epoch 2 and resumed with --ckpt_path last vs. an uninterrupted one", True, resume),
    ("device_tests", "pytest " + " ".join(DEVICE_TESTS), False, device_tests),
]


def summary(report: dict) -> str:
    """The markdown page: what auto resolved to, the step times as a table, every other check's record in one line."""
    checks = report["checks"]
    lines = ["# GPU check", "", f"{report['when']}, {'a dry run on the CPU: no GPU numbers' if report['dry_run'] else 'on the GPU'}."
             " Every number is in gpu_check.json.", "", "```", checks.get("auto", {}).get("describe", ""), "```", ""]
    if isinstance(checks.get("step_time"), list):
        lines += ["| precision | compile | progress bar | ms/step | warm-up s | GPU utilisation % |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['precision']} | {r['compile']} | {r['progress_bar']} | {r.get('ms_per_step', 0):.2f} | "
                  f"{r.get('warmup_s', 0):.1f} | {r.get('gpu_utilisation_pct')} |" for r in checks["step_time"]]
        lines.append("")
    for name, record in checks.items():
        if name == "step_time" and isinstance(record, list):
            continue
        shown = {key: value for key, value in record.items() if key not in ("describe", "runs")}
        lines.append(f"- **{name}**: `{json.dumps(shown, default=str)[:600]}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and the runs")
    parser.add_argument("--data-dir", default=None, help="folder holding FashionMNIST/raw/ (a dry run writes tiny files)")
    parser.add_argument("--dry-run", action="store_true", help="list the checks, then run the CPU-runnable ones on this CPU")
    args = parser.parse_args(argv)
    args.device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        parser.exit(2, "error: no CUDA device here; run with --dry-run to see the plan and run its CPU parts.\n")
    if args.data_dir is None and not args.dry_run:
        parser.exit(2, "error: --data-dir: the folder holding FashionMNIST/raw/ (here: ../shared/data).\n")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    args.out = str(Path(args.out).resolve())
    args.data_dir = str(Path(args.data_dir or write_tiny(Path(args.out, "tiny"))).resolve())
    args.data = [f"--data.data_dir={args.data_dir}", *(["--data.init_args.val_size=32", "--data.init_args.batch_size=32"]
                                                       if args.dry_run else [])]  # the dry run's tiny set
    for name, what, on_cpu, _ in CHECKS:
        print(f"{name}: {what}{'' if on_cpu or not args.dry_run else ' (GPU only: skipped)'}", flush=True)
    lightning = logging.getLogger("pytorch_lightning")  # its INFO lines per run: the summary says what matters
    here, visible, level = os.getcwd(), os.environ.get("CUDA_VISIBLE_DEVICES"), lightning.level
    os.chdir(args.out)  # the runs' folders: lightning_logs/ in --out
    lightning.setLevel(logging.WARNING)
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, even on a GPU machine
    try:
        report = run_checks(args)
    finally:
        os.chdir(here)
        lightning.setLevel(level)
        if args.dry_run:
            os.environ.pop("CUDA_VISIBLE_DEVICES") if visible is None else os.environ.update(CUDA_VISIBLE_DEVICES=visible)
    Path(args.out, "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    Path(args.out, "gpu_check.md").write_text(summary(report))
    print(f"{Path(args.out, 'gpu_check.json')}, {Path(args.out, 'gpu_check.md')}")
    return 0 if not any("error" in record for record in report["checks"].values() if isinstance(record, dict)) else 1


def run_checks(args: argparse.Namespace) -> dict:
    """Every check the machine can run, each on its own: one that fails is recorded with its error, the others run."""
    report = {"when": time.strftime("%Y-%m-%d %H:%M"), "dry_run": args.dry_run, "checks": {}}
    for name, _, on_cpu, check in CHECKS:
        if args.dry_run and not on_cpu:
            continue
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                report["checks"][name] = check(args)
        except Exception as error:
            report["checks"][name] = {"error": f"{type(error).__name__}: {error}"[:600]}
        print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return report

if __name__ == "__main__":
    raise SystemExit(main())
