"""What runs this: the CPU, the GPU, the code's commit; and what ``precision: auto`` means here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

PROJECT = Path(__file__).resolve().parents[1]
CUDA_ACCELERATORS = ("auto", "gpu", "cuda")


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags from /proc/cpuinfo (``("unknown", set())`` elsewhere)."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                name, _, rest = line.partition(":")
                if name.strip() == "model name" and model == "unknown":
                    model = rest.strip()
                elif name.strip() == "flags" and not flags:
                    flags = set(rest.split())
    except OSError:
        pass
    return model, flags


def cpu_has_native_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info()[1])


def read_gpu(index: int) -> dict[str, Any]:
    """Name, compute capability and native bfloat16 (not Turing's and Volta's emulated one) of CUDA device ``index``."""
    major, minor = torch.cuda.get_device_capability(index)
    native = (torch.cuda.is_bf16_supported(including_emulation=False) if index == torch.cuda.current_device()
              else major >= 8)
    return {"name": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}", "native_bf16": native}


def gpu_facts(index: int = 0) -> dict[str, Any]:
    """``read_gpu`` in a forked child while this process has not started CUDA: once it has, Lightning can no longer
    fork (``ddp_fork``, a notebook's several devices)."""
    if torch.cuda.is_initialized() or not hasattr(os, "fork"):
        return read_gpu(index)
    # A bare fork and a pipe: a multiprocessing Pool forked from a threaded process (pytest-xdist, a notebook) can
    # deadlock on a lock another thread held at the fork
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            answer = {"facts": read_gpu(index)}
        except Exception as error:  # noqa: BLE001 - said by the parent
            answer = {"error": f"{type(error).__name__}: {error}"}
        os.write(writing, json.dumps(answer).encode())
        os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        text = pipe.read()
    os.waitpid(child, 0)
    answer = json.loads(text or '{"error": "the child reading the GPU died"}')
    if "error" in answer:
        raise RuntimeError(f"reading CUDA device {index}: {answer['error']}")
    return answer["facts"]


def auto_precision(accelerator: Any = "auto") -> str:
    """``precision: auto``, native precisions only: on a CUDA GPU ``bf16-mixed`` from compute capability 8.0,
    ``16-mixed`` on 7.x (fp16 tensor cores, emulated bfloat16), ``32-true`` before; on a CPU ``bf16-mixed`` with
    AVX512-BF16 or AMX, else ``32-true`` (emulated bfloat16 is several times slower)."""
    if str(accelerator) in CUDA_ACCELERATORS and torch.cuda.is_available():
        facts = gpu_facts()
        if facts["native_bf16"]:
            return "bf16-mixed"
        return "16-mixed" if int(facts["capability"].split(".")[0]) >= 7 else "32-true"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def machine_record(device: torch.device, trainer: pl.Trainer | None = None) -> dict[str, Any]:
    """The hardware a run's numbers come from (metrics.json, HParams): CPU, threads, a CUDA run's GPU, CUDA, cuDNN and
    its benchmark flag; the world size and torch's float32 matmul precision."""
    cuda = device.type == "cuda"
    gpu = gpu_facts(device.index or 0) if cuda else {}
    return {"cpu": cpu_info()[0], "cpu_native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
            "gpu": gpu.get("name"), "gpu_capability": gpu.get("capability"),
            "cuda": torch.version.cuda if cuda else None, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpus_visible": torch.cuda.device_count() if cuda else None,
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
            "world_size": trainer.world_size if trainer is not None else 1,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def code_record() -> dict[str, Any] | None:
    """The project's git commit and whether tracked files differ from it; None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True, check=True, timeout=10).stdout

    try:
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def describe() -> str:
    """What ``precision: auto`` picks on this machine, and why (``python scripts/machine.py``)."""
    gpu = "none"
    if torch.cuda.is_available():
        facts = gpu_facts()
        gpu = (f"{facts['name']} (compute capability {facts['capability']}; native bfloat16: "
               f"{'yes' if facts['native_bf16'] else 'no'}), {torch.cuda.device_count()} visible; CUDA {torch.version.cuda}")
    return (f"CPU: {cpu_info()[0]}; native bfloat16 (avx512_bf16 or amx_bf16): {'yes' if cpu_has_native_bf16() else 'no'}; "
            f"torch threads: {torch.get_num_threads()}\nGPU: {gpu}\nprecision auto -> {auto_precision()}")
