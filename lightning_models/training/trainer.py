"""Lightning's Trainer with ``precision: auto`` and ``float32_matmul_precision``."""

import inspect
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from lightning_models.machine import auto_precision, cpu_has_native_bf16

# Lightning's own values plus "auto", which jsonargparse checks a config against
Precision = Literal["auto"] | inspect.signature(pl.Trainer.__init__).parameters["precision"].annotation


class Trainer(pl.Trainer):
    """``precision="auto"``: ``machine.auto_precision``; ``float32_matmul_precision``: set for the process (high: TF32)."""

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
