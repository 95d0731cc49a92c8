"""Lightning's Trainer, with ``precision: auto``: the fastest precision known to be right on the machine at hand."""

import inspect
from typing import Any, Literal

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from lightning_models.machine import auto_precision, cpu_has_native_bf16

# Lightning's own accepted values, read from its signature, plus "auto" (jsonargparse checks a config against it).
LIGHTNING_PRECISION = inspect.signature(pl.Trainer.__init__).parameters["precision"].annotation
Precision = Literal["auto"] | LIGHTNING_PRECISION


class Trainer(pl.Trainer):
    """``pytorch_lightning.Trainer``; ``precision="auto"`` becomes ``bf16-mixed`` where bfloat16 runs in hardware
    (a CUDA GPU that supports it, a CPU with AVX512-BF16 or AMX) and ``32-true`` elsewhere. The CLI resolves it
    before building, so the run's ``config.yaml`` holds the value used. Asked for bf16 on a CPU that emulates it, it warns."""

    def __init__(self, *, precision: Precision = None, **kwargs: Any) -> None:
        if precision == "auto":
            precision = auto_precision(kwargs.get("accelerator", "auto"))
        super().__init__(precision=precision, **kwargs)
        if str(self.precision).startswith("bf16") and self.strategy.root_device.type == "cpu" and not cpu_has_native_bf16():
            rank_zero_warn(f"precision={self.precision} on a CPU without AVX512-BF16 or AMX: bfloat16 is emulated there and "
                           "training runs several times slower (docs/speed.md); 32-true is faster on this CPU.",
                           category=UserWarning)
