"""Safe checkpoint loading: tensors and plain values only (``weights_only=True``), never pickled code."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml


def module_class(path: str | Path) -> type[pl.LightningModule]:
    """The LightningModule class recorded in a checkpoint (``TaskModule.on_save_checkpoint``), or
    else in the ``config.yaml`` of the run the checkpoint belongs to."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    class_path = checkpoint.get("module_class")
    run_config = Path(path).resolve().parent.parent / "config.yaml"
    if class_path is None and run_config.is_file():
        class_path = (yaml.safe_load(run_config.read_text()).get("model") or {}).get("class_path")
    if class_path is None:
        raise ValueError(f"{path} does not record its module class; load it with YourModule.load_from_checkpoint.")
    module_name, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def load_module(path: str | Path, map_location: str = "cpu") -> pl.LightningModule:
    """Load a checkpoint written by the template, refusing anything but tensors and plain values."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return module_class(path).load_from_checkpoint(path, map_location=map_location, weights_only=True).eval()
