"""Three small things several layers need, written once: import a class path, a mean and its spread, quiet logs."""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import statistics
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

THIRD_PARTY_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


def import_class(class_path: str) -> Any:
    """The object ``package.module.Name`` names; ImportError/AttributeError/ValueError as Python raises them."""
    module, _, name = class_path.rpartition(".")
    if not module:
        raise ValueError(f"{class_path!r} is not a class path (package.module.Name)")
    return getattr(importlib.import_module(module), name)


def mean_spread(values: Iterable[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (n - 1); the spread of one value is NaN (unknown, not zero)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_spread of no values")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def format_mean_spread(values: Iterable[float], digits: int = 4) -> str:
    """``0.9333 ± 0.0211 (n=5)``; one value is ``0.9333 (n=1)``: no spread is claimed from one run."""
    values = list(values)
    mean, spread = mean_spread(values)
    return f"{mean:.{digits}f} (n=1)" if math.isnan(spread) else f"{mean:.{digits}f} ± {spread:.{digits}f} (n={len(values)})"


@contextlib.contextmanager
def quiet_logs(level: int = logging.WARNING, warnings_too: bool = False) -> Iterator[None]:
    """Lightning's INFO lines (and, asked, Python warnings) turned down inside the block, restored after it."""
    loggers = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        if warnings_too:
            warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(max(level, logger.level))
        try:
            yield
        finally:
            for logger, old in zip(loggers, levels):
                logger.setLevel(old)
