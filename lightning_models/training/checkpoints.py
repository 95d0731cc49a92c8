"""Checkpoints: ``last.ckpt`` after every validation, and safe loading (tensors and plain values only)."""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_models.checks import ConfigError
from lightning_models.util import import_class

EXPORTS = {".onnx": "ONNX", ".pt2": "torch.export", ".npz": "numpy"}  # scripts/export.py's model files
WRITTEN_BY_US = "pass a .ckpt written by scripts/train.py"


class CheckpointError(ConfigError):
    """A checkpoint file that is missing, damaged, foreign, or holds more than tensors and plain values."""


class LastCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt`` after every validation and at the end of training (Lightning's ``save_last`` writes it
    only with a top-k checkpoint: with ``save_top_k=1`` the best, so a resume would start over from there)."""

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False,
                         save_on_train_epoch_end=False)
        self.saved_at_step: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self.saved_at_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.saved_at_step != trainer.global_step and self.dirpath and not trainer.fast_dev_run:
            self.best_model_path = str(Path(self.dirpath, "last.ckpt"))
            trainer.save_checkpoint(self.best_model_path)


def export_refusal(path: Path) -> str | None:
    """What to say when ``path`` is an export of scripts/export.py (or a lone ``.onnx``/``.pt2``), else None."""
    folder = path if path.is_dir() else path.parent
    description, suffix = folder / "model.json", path.suffix.lower()
    exported = description.is_file() and (path.is_dir() or suffix in (*EXPORTS, ".json"))
    if not (exported or (path.is_file() and suffix in (".onnx", ".pt2"))):
        return None
    try:
        source = json.loads(description.read_text()).get("checkpoint") if exported else None
    except (OSError, ValueError, AttributeError):
        source = None
    kind, where = (("an export of scripts/export.py", f"'{folder}'") if exported else
                   (f"a model exported to {EXPORTS[suffix]}", "<the folder scripts/export.py wrote it into, with its model.json>"))
    origin = f", or pass the checkpoint it was exported from: {source}" if isinstance(source, str) and Path(source).is_file() else ""
    return f"{path}: {kind}, not a checkpoint; run it with lightning_models.inference.export.load_export({where}).predict(inputs){origin}."


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` (``weights_only=True``), or a one-line ``CheckpointError`` saying what is wrong."""
    path = Path(path)
    if (export := export_refusal(path)) is not None:
        raise CheckpointError(export)
    if path.is_dir():
        inside = ", ".join(file.name for file in sorted((path / "checkpoints").glob("*.ckpt")))
        raise CheckpointError(f"{path}: a folder, not a checkpoint file; pass a .ckpt"
                              + (f"; its checkpoints/ holds {inside}." if inside else " (a run's are in its checkpoints/)."))
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file (a run's are in its checkpoints/).{usable_instead(path)}")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith(b"PK") and head[:1] != b"\x80":  # neither torch.save's zip nor a pickle
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (it starts with {head!r}); {WRITTEN_BY_US}.{usable_instead(path)}")
    if head.startswith(b"PK"):  # checksums before unpickling: a changed byte in data.pkl is no foreign object
        try:
            with zipfile.ZipFile(path) as archive:  # no CRC-32s where saving skipped them (compute_crc32=False)
                member = archive.testzip() if any(info.CRC for info in archive.infolist()) else None
        except (zipfile.BadZipFile, OSError):  # torch.save's zip, its end missing
            raise CheckpointError(f"{path}: truncated or damaged (an interrupted copy or write?).{usable_instead(path)}") from None
        if member is not None:
            raise CheckpointError(f"{path}: damaged ({member} does not match its checksum); use an intact copy.{usable_instead(path)}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused an object: loading it would run code
        raise CheckpointError(f"{path}: refused: it holds objects beyond tensors and plain values, which could run code; "
                              "if you trust it: YourModule.load_from_checkpoint(path, weights_only=False).") from None
    except (RuntimeError, EOFError, OSError, ValueError, MemoryError) as error:
        reason = first_line(error)
        raise CheckpointError(f"{path}: truncated, damaged or not a PyTorch checkpoint ({reason}).{usable_instead(path)}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: a PyTorch file but not a Lightning checkpoint (no state_dict); {WRITTEN_BY_US}.")
    return checkpoint


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def usable_instead(path: Path) -> str:
    """`` A readable checkpoint of the same run: X``, the newest readable one beside ``path``, or empty."""
    others = [other for other in path.parent.glob("*.ckpt") if other.resolve() != path.resolve()] if path.parent.is_dir() else []
    for other in sorted(others, key=lambda other: other.stat().st_mtime, reverse=True):
        try:
            torch.load(other, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - an unreadable sibling is simply not offered
            continue
        return f" A readable checkpoint of the same run: {other}"
    return ""


@dataclass(frozen=True)
class ChosenCheckpoint:
    """The checkpoint file a command loads, and why that one."""

    path: Path
    why: str = ""
    outside: bool = False  # a run folder's file found only at the path its metrics.json recorded, outside the folder

    def line(self) -> str:
        return f"checkpoint: {self.path}" + (f" ({self.why})" if self.why else "")


def choose_checkpoint(path: str | Path) -> ChosenCheckpoint:
    """``path``, or for a run folder the file of its ``checkpoints/`` that ``metrics.json`` names (best, else last)."""
    path = Path(path)
    if not (path.is_dir() and (path / "metrics.json").is_file()):
        return ChosenCheckpoint(path)
    try:
        record = json.loads((path / "metrics.json").read_text())
        recorded = record.get("checkpoints") or {}
    except (ValueError, AttributeError):
        raise CheckpointError(f"{path}/metrics.json: not the JSON record scripts/train.py writes; pass a .ckpt file.") from None
    files = [(kind, Path(recorded[kind])) for kind in ("best", "last") if isinstance(recorded.get(kind), str) and recorded[kind]]
    of = f"checkpoint of run folder {path}"
    for kind, file in files:
        if (own := path / "checkpoints" / file.name).is_file():
            why = (("the one its test metrics come from" if "test" in record else "by its monitor") if kind == "best" else
                   f"as its best, {files[0][1].name}, is not in its checkpoints/" if files[0][0] == "best" else "as it records no best")
            return ChosenCheckpoint(own, f"the {kind} {of}, {why}")
    for kind, file in files:
        if file.is_file() and file.resolve().is_relative_to(path.resolve()):  # a checkpoint.dirpath inside the folder
            return ChosenCheckpoint(file, f"the {kind} {of}, where its metrics.json records it")
    for kind, file in files:
        if file.is_file():
            return ChosenCheckpoint(file, f"the {kind} {of}, at the path its metrics.json records, outside the folder: its "
                                          f"checkpoints/ has no {file.name}", outside=True)
    named = ", ".join(str(file) for _, file in files) or "none"
    raise CheckpointError(f"{path}: neither its checkpoints/ nor the paths its metrics.json records ({named}) hold a "
                          "checkpoint; pass a .ckpt file.")


def class_paths(value: Any) -> Iterator[str]:
    """Every class the saved hyperparameters name (``class_path``, ``_class_path``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from [item] if key in ("class_path", "_class_path") and isinstance(item, str) else class_paths(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from class_paths(item)


def imported(path: str | Path, class_path: str) -> Any:
    """The class ``class_path`` names, or a one-line ``CheckpointError`` with the PYTHONPATH that would find it."""
    module_name, top = class_path.rpartition(".")[0], class_path.split(".")[0]
    try:
        return import_class(class_path)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        if not (module_name == missing or module_name.startswith(missing + ".")):  # it imports, but needs another package
            raise CheckpointError(f"{path}: its class {class_path} does not import: {module_name} needs the module "
                                  f"'{missing}', which is not installed here; pip install it.") from None
        holder = next((folder for folder in [Path.cwd(), *Path(path).resolve().parents]
                       if (folder / top / "__init__.py").is_file() or (folder / f"{top}.py").is_file()), None)
        raise CheckpointError(f"{path}: its class {class_path} does not import: no module named '{missing}' here; put the "
                              f"folder that holds {top} on PYTHONPATH (PYTHONPATH={holder or f'<the folder holding {top}/>'} "
                              "before the command), or pip install the package that defines it.") from None
    except (ImportError, AttributeError, ValueError) as error:
        raise CheckpointError(f"{path}: its class {class_path} cannot be imported ({first_line(error)}); install the version "
                              "of its package that trained it.") from None


def load_module(path: str | Path, map_location: str = "cpu") -> pl.LightningModule:
    """A template checkpoint's module (its class recorded, else its run's config.yaml's), read with ``weights_only=True``."""
    checkpoint = read_checkpoint(path)
    class_path, run_config = checkpoint.get("module_class"), Path(path).resolve().parent.parent / "config.yaml"
    if class_path is None and run_config.is_file():
        class_path = (yaml.safe_load(run_config.read_text()).get("model") or {}).get("class_path")
    if class_path is None:
        raise CheckpointError(f"{path}: no module class recorded, nor a run's config.yaml beside its checkpoints/; "
                              "load it with YourModule.load_from_checkpoint(path).")
    module = imported(path, class_path)
    for name in class_paths(checkpoint.get("hyper_parameters")):
        if "." in name:  # a bare name is jsonargparse's to resolve
            imported(path, name)
    return module.load_from_checkpoint(path, map_location=map_location, weights_only=True).eval()
