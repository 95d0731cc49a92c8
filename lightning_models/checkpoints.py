"""Checkpoints: ``last.ckpt`` after every validation, and safe loading (tensors and plain values only)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``checkpoints/last.ckpt`` after every validation, replacing the previous one.

    Since Lightning 2.6, ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only at a step where
    a top-k checkpoint is saved, so with ``save_top_k=1`` it is the best model, not the latest, and
    a resumed run would start over from there. ``TemplateCLI`` adds this callback beside the best one
    (``dirpath``: the best one's folder; ``None``, Lightning's rule: ``<run folder>/checkpoints``).
    """

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False,
                         save_on_train_epoch_end=False)
        self.saved_at_step: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self.saved_at_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A run that ends after its last validation (or has none) keeps its final weights too."""
        if self.saved_at_step != trainer.global_step and self.dirpath and not trainer.fast_dev_run:
            self.best_model_path = str(Path(self.dirpath, "last.ckpt"))
            trainer.save_checkpoint(self.best_model_path)


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
