"""Lightning's Trainer, with ``precision: auto`` (the fastest precision known to be right on the machine at hand) and
``float32_matmul_precision`` (torch's TF32 lever for 32-bit matmuls on GPUs with tensor cores)."""

import inspect
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from lightning_models.machine import auto_precision, cpu_has_native_bf16

# Lightning's own accepted values, read from its signature, plus "auto" (jsonargparse checks a config against it).
LIGHTNING_PRECISION = inspect.signature(pl.Trainer.__init__).parameters["precision"].annotation
Precision = Literal["auto"] | LIGHTNING_PRECISION


class Trainer(pl.Trainer):
    """``pytorch_lightning.Trainer``; ``precision="auto"`` becomes a native precision (``machine.auto_precision``:
    ``bf16-mixed`` on CUDA compute capability 8.0+ and on CPUs with AVX512-BF16 or AMX, ``16-mixed`` on CUDA 7.x,
    ``32-true`` elsewhere). The CLI resolves it before building, so the run's ``config.yaml`` holds the value used.
    Asked for bf16 on a CPU that emulates it, it warns.

    ``float32_matmul_precision``: ``highest`` (torch's default), ``high`` or ``medium``, set with
    ``torch.set_float32_matmul_precision`` (for the whole process) before the Trainer is built; ``None`` leaves it as
    it is. ``high`` lets 32-bit matmuls use TF32 tensor cores on Ampere and newer GPUs; ``metrics.json`` records it.
    """

    def __init__(self, *, precision: Precision = None,
                 float32_matmul_precision: Literal["highest", "high", "medium"] | None = None, **kwargs: Any) -> None:
        if float32_matmul_precision is not None:
            torch.set_float32_matmul_precision(float32_matmul_precision)
        if precision == "auto":
            precision = auto_precision(kwargs.get("accelerator", "auto"))
        super().__init__(precision=precision, **kwargs)
        if str(self.precision).startswith("bf16") and self.strategy.root_device.type == "cpu" and not cpu_has_native_bf16():
            rank_zero_warn(f"precision={self.precision} on a CPU without AVX512-BF16 or AMX: bfloat16 is emulated there and "
                           "training runs several times slower (docs/speed.md); 32-true is faster on this CPU.",
                           category=UserWarning)
