"""Checkpoints: ``last.ckpt`` after every validation, and safe loading (tensors and plain values only)."""

from __future__ import annotations

import importlib
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


EXPORT_FILES = {".onnx": "ONNX", ".pt2": "torch.export", ".npz": "numpy"}  # scripts/export.py's model files


def export_refusal(path: Path) -> str | None:
    """What to say when ``path`` is an export (scripts/export.py's folder, its ``model.json`` or a model file; a lone
    ``.onnx``/``.pt2``) rather than a checkpoint; None when it is not one."""
    folder = path if path.is_dir() else path.parent
    description = folder / "model.json"
    exported = description.is_file() and (path.is_dir() or path.suffix.lower() in (*EXPORT_FILES, ".json"))
    if not (exported or (path.is_file() and path.suffix.lower() in (".onnx", ".pt2"))):
        return None
    suffix = path.suffix.lower()
    kind = ("an export folder of scripts/export.py" if path.is_dir() else "the description of an export of scripts/export.py"
            if suffix == ".json" else f"the {EXPORT_FILES[suffix]} model of an export of scripts/export.py" if exported
            else f"{'an' if suffix == '.onnx' else 'a'} {EXPORT_FILES[suffix]} model")
    try:
        source = json.loads(description.read_text()).get("checkpoint") if exported else None
    except (OSError, ValueError, AttributeError):
        source = None
    origin = f", or pass the checkpoint it was exported from: {source}" if isinstance(source, str) and Path(source).is_file() else ""
    where = f"'{folder}'" if exported else "<the folder scripts/export.py wrote it into, with its model.json>"
    return f"{path}: {kind}, not a checkpoint; run it with lightning_models.inference.export.load_export({where}).predict(inputs){origin}."


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict, loaded with ``weights_only=True`` (tensors and plain values only), or a
    one-line ``CheckpointError`` naming the file, what is wrong with it and what to do."""
    path = Path(path)
    if (export := export_refusal(path)) is not None:
        raise CheckpointError(export)
    if path.is_dir():
        inside = sorted((path / "checkpoints").glob("*.ckpt"))
        instead = f"; its checkpoints/ holds {', '.join(file.name for file in inside)}" if inside else " (a run's are in its checkpoints/)"
        raise CheckpointError(f"{path}: a folder, not a checkpoint file; pass a .ckpt{instead}.")
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


@dataclass(frozen=True)
class ChosenCheckpoint:
    """The checkpoint file a command loads, and why that one (empty when the file itself was named)."""

    path: Path
    why: str = ""
    outside: bool = False  # a run folder's file found only at the path its metrics.json recorded, outside the folder

    def line(self) -> str:
        """The one line every command prints (standard error) to say which file it used."""
        return f"checkpoint: {self.path}" + (f" ({self.why})" if self.why else "")


def choose_checkpoint(path: str | Path) -> ChosenCheckpoint:
    """``path`` itself; for a run folder (one with ``metrics.json``), its own checkpoint, found in its ``checkpoints/`` by
    the file name ``metrics.json`` records: the best, the one its test metrics come from, else the last. Only when the
    folder holds neither (a copy made without them, a ``checkpoint.dirpath`` elsewhere) the recorded path itself, and
    ``outside`` says so: a copied or moved folder never answers silently with another folder's weights."""
    path = Path(path)
    if not (path.is_dir() and (path / "metrics.json").is_file()):
        return ChosenCheckpoint(path)
    try:
        record = json.loads((path / "metrics.json").read_text())
        recorded = record.get("checkpoints") or {}
    except (ValueError, AttributeError):
        raise CheckpointError(f"{path}/metrics.json: not the JSON record scripts/train.py writes; pass a .ckpt file.") from None
    files = [(kind, Path(recorded[kind])) for kind in ("best", "last") if isinstance(recorded.get(kind), str) and recorded[kind]]
    for kind, file in files:
        own = path / "checkpoints" / file.name
        if own.is_file():
            why = (("the one its test metrics come from" if "test" in record else "by its monitor") if kind == "best" else
                   f"as its best, {files[0][1].name}, is not in its checkpoints/" if files[0][0] == "best" else "as it records no best")
            return ChosenCheckpoint(own, f"the {kind} checkpoint of run folder {path}, {why}")
    for kind, file in files:
        if file.is_file() and file.resolve().is_relative_to(path.resolve()):  # a checkpoint.dirpath inside the folder
            return ChosenCheckpoint(file, f"the {kind} checkpoint of run folder {path}, where its metrics.json records it")
    for kind, file in files:
        if file.is_file():
            return ChosenCheckpoint(file, f"the {kind} checkpoint of run folder {path}, at the path its metrics.json records, "
                                          f"outside the folder: its checkpoints/ has no {file.name}", outside=True)
    named = ", ".join(str(file) for _, file in files) or "none"
    raise CheckpointError(f"{path}: neither its checkpoints/ nor the paths its metrics.json records ({named}) hold a "
                          "checkpoint; pass a .ckpt file.")


def checkpoint_of(path: str | Path) -> Path:
    """The checkpoint file ``path`` means (``choose_checkpoint``): itself, or a run folder's best."""
    return choose_checkpoint(path).path


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
    return imported(path, class_path)


def class_paths(value: Any) -> Iterator[str]:
    """Every class a module's saved hyperparameters name (``class_path``; LightningCLI's ``_class_path``): the module,
    its net, its optimizer... which ``load_from_checkpoint`` imports to rebuild it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("class_path", "_class_path") and isinstance(item, str):
                yield item
            else:
                yield from class_paths(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from class_paths(item)


def imported(path: str | Path, class_path: str) -> Any:
    """The class ``class_path`` names, or a one-line ``CheckpointError``: a package that is not on the path is
    named, with the PYTHONPATH that would find it (a folder holding it beside the run, where there is one)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except ModuleNotFoundError as error:
        missing, top = error.name or module_name, class_path.split(".")[0]
        if not (module_name == missing or module_name.startswith(missing + ".")):  # it imports, but needs another package
            raise CheckpointError(f"{path}: its class {class_path} does not import: {module_name} needs the module "
                                  f"'{missing}', which is not installed here; pip install it.") from None
        holder = folder_holding(top, Path(path))
        raise CheckpointError(f"{path}: its class {class_path} does not import: no module named '{missing}' here; put the "
                              f"folder that holds {top} on PYTHONPATH (PYTHONPATH={holder or f'<the folder holding {top}/>'} "
                              "before the command), or pip install the package that defines it.") from None
    except (ImportError, AttributeError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{path}: its class {class_path} cannot be imported ({reason}); install the version of its "
                              "package that trained it.") from None


def folder_holding(package: str, checkpoint: Path) -> Path | None:
    """The working folder or a folder above the checkpoint (training ran from there) holding ``package``."""
    for folder in [Path.cwd(), *checkpoint.resolve().parents]:
        if (folder / package / "__init__.py").is_file() or (folder / f"{package}.py").is_file():
            return folder
    return None


def load_module(path: str | Path, map_location: str = "cpu") -> pl.LightningModule:
    """Load a checkpoint written by the template, refusing anything but tensors and plain values, and naming a class
    of it that does not import (the user's own net, without its folder on PYTHONPATH) in one line."""
    checkpoint = read_checkpoint(path)
    module = module_class(path, checkpoint)
    for class_path in class_paths(checkpoint.get("hyper_parameters")):
        if "." in class_path:  # a bare name is jsonargparse's to resolve
            imported(path, class_path)
    return module.load_from_checkpoint(path, map_location=map_location, weights_only=True).eval()
