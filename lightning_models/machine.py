"""What the machine running this can do: the CPU's model and features."""

from __future__ import annotations


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
