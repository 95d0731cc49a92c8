"""What the panels call each class."""

from __future__ import annotations

import pytorch_lightning as pl


def class_names(trainer: pl.Trainer, count: int) -> list[str]:
    """The datamodule's ``class_names`` when it has ``count`` of them, else ``"0"``, ``"1"``, ..."""
    names = getattr(trainer.datamodule, "class_names", None)
    return list(names) if names is not None and len(names) == count else [str(index) for index in range(count)]
