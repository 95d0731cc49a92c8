"""Checkpoints: ``last.ckpt`` after every validation, and safe loading (tensors and plain values only)."""

from __future__ import annotations

import importlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_models.checks import ConfigError


class CheckpointError(ConfigError):
    """A checkpoint file that is missing, damaged, truncated, foreign, or holds more than tensors and plain values."""


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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict, loaded with ``weights_only=True`` (tensors and plain values only), or a
    one-line ``CheckpointError`` naming the file, what is wrong with it and what to do."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file; pass a .ckpt (a run's are in its checkpoints/).")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; a run's are in lightning_logs/<experiment>/version_N/"
                              f"checkpoints/.{usable_instead(path)}")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):  # torch.save's zip, its end missing
        raise CheckpointError(f"{path}: truncated or damaged (its zip archive has no central directory; an interrupted "
                              f"copy or write?).{usable_instead(path)}")
    if not head.startswith(b"PK") and head[:1] != b"\x80":  # neither torch.save's zip nor a pickle
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (it starts with {head!r}); pass a .ckpt written by "
                              f"scripts/train.py.{usable_instead(path)}")
    if head.startswith(b"PK"):  # checksums before unpickling: a changed byte in data.pkl is no foreign object
        try:  # torch.save stores each member's CRC-32; zeros where saving skipped them (compute_crc32=False)
            with zipfile.ZipFile(path) as archive:
                member = archive.testzip() if any(info.CRC for info in archive.infolist()) else None
            damaged = f"{member} does not match its checksum" if member is not None else None
        except (zipfile.BadZipFile, OSError):
            damaged = "its zip directory is unreadable"
        if damaged is not None:
            raise CheckpointError(f"{path}: damaged ({damaged}); use an intact copy.{usable_instead(path)}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused an object: loading it would run code
        raise CheckpointError(f"{path}: refused: it holds objects beyond tensors and plain values, and loading them could run "
                              "code; if you trust its source, load it with YourModule.load_from_checkpoint(path, "
                              "weights_only=False).") from None
    except (RuntimeError, EOFError, OSError, ValueError, MemoryError) as error:  # a truncated zip, a text file...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: damaged, truncated or not a PyTorch checkpoint ({reason}).{usable_instead(path)}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: a PyTorch file but not a Lightning checkpoint (no state_dict); "
                              "pass a .ckpt written by scripts/train.py.")
    return checkpoint


def checkpoint_of(path: str | Path) -> Path:
    """``path`` itself; for a run folder, the checkpoint its ``metrics.json`` says the test metrics came from (the best;
    else the last), looked up in its ``checkpoints/`` when the folder was moved."""
    path = Path(path)
    if not (path.is_dir() and (path / "metrics.json").is_file()):
        return path
    recorded = json.loads((path / "metrics.json").read_text()).get("checkpoints") or {}
    for kind in ("best", "last"):
        for candidate in ([Path(recorded[kind]), path / "checkpoints" / Path(recorded[kind]).name] if recorded.get(kind) else []):
            if candidate.is_file():
                return candidate
    raise CheckpointError(f"{path}: its metrics.json names no checkpoint that is still there; pass a .ckpt file.")


def usable_instead(path: Path) -> str:
    """`` Use X instead.`` naming the readable checkpoints beside ``path`` (a run's best one when ``last.ckpt`` is
    damaged), newest first; empty when there is none."""
    folder = path.parent if path.parent.is_dir() else None
    others = sorted((other for other in (folder.glob("*.ckpt") if folder else []) if other.resolve() != path.resolve()),
                    key=lambda other: other.stat().st_mtime, reverse=True)
    for other in others:
        try:
            torch.load(other, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any unreadable sibling is simply not offered
            continue
        return f" A readable checkpoint of the same run: {other}"
    return ""


def module_class(path: str | Path, checkpoint: dict[str, Any] | None = None) -> type[pl.LightningModule]:
    """The LightningModule class recorded in a checkpoint (``TaskModule.on_save_checkpoint``), or
    else in the ``config.yaml`` of the run the checkpoint belongs to."""
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    class_path = checkpoint.get("module_class")
    run_config = Path(path).resolve().parent.parent / "config.yaml"
    if class_path is None and run_config.is_file():
        class_path = (yaml.safe_load(run_config.read_text()).get("model") or {}).get("class_path")
    if class_path is None:
        raise CheckpointError(f"{path} does not record its module class (not written by a template module, and no "
                              "config.yaml beside its checkpoints/ folder); load it with YourModule.load_from_checkpoint(path).")
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise CheckpointError(f"{path}: its module class {class_path} cannot be imported; install the package "
                              "that defines it or put its folder on PYTHONPATH.") from None


def load_module(path: str | Path, map_location: str = "cpu") -> pl.LightningModule:
    """Load a checkpoint written by the template, refusing anything but tensors and plain values."""
    module = module_class(path, read_checkpoint(path))
    return module.load_from_checkpoint(path, map_location=map_location, weights_only=True).eval()
