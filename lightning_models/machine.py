"""What runs this: the CPU (model, native bfloat16), the GPU, the code's commit; and the precision ``auto`` means here."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import torch

PROJECT = Path(__file__).resolve().parents[1]


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags (Linux's /proc/cpuinfo; ``("unknown", set())`` elsewhere)."""
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
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info()[1])


def auto_precision(accelerator: Any = "auto") -> str:
    """``bf16-mixed`` where bfloat16 runs in hardware (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX),
    else ``32-true``: on other CPUs bfloat16 is emulated and slower than 32-bit."""
    if str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def machine_record(device: torch.device) -> dict[str, Any]:
    """The hardware a run's numbers come from, for ``metrics.json`` and the HParams tab."""
    return {"cpu": cpu_info()[0], "cpu_native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def code_record() -> dict[str, Any] | None:
    """The project's git commit and whether files differ from it; None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True, check=True, timeout=10).stdout

    try:
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def describe() -> str:
    """What ``precision: auto`` picks on this machine, and why (``python scripts/machine.py``)."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (f"CPU: {cpu_info()[0]}; native bfloat16 (avx512_bf16 or amx_bf16): {'yes' if cpu_has_native_bf16() else 'no'}; "
            f"torch threads: {torch.get_num_threads()}\nGPU: {gpu}\nprecision auto -> {auto_precision()}")
