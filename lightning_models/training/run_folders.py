"""Run folders: ``lightning_logs/<experiment>/version_N`` holds one run's logs, checkpoints, config and metrics."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

LOG_ROOT = "lightning_logs"


def run_folder(trainer: pl.Trainer) -> Path:
    """The first logger's ``version_N`` when it is TensorBoard or CSV, else the trainer's ``default_root_dir``."""
    first = trainer.loggers[0] if trainer.loggers else None
    return Path(first.log_dir) if isinstance(first, (TensorBoardLogger, CSVLogger)) else Path(trainer.default_root_dir)


def named_run_options(folder: str | Path, hparams: dict[str, Any]) -> list[str]:
    """Options for one run of many (a trial, a fold): TensorBoard into ``folder``, ``hparams`` in its HParams, quiet."""
    folder = Path(folder)
    logger = {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
              "init_args": {"save_dir": LOG_ROOT, "name": str(folder.parent.relative_to(LOG_ROOT)), "version": folder.name,
                            "default_hp_metric": False}}
    return [f"--trainer.logger={json.dumps(logger)}", f"--log_hparams={json.dumps(hparams)}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def run_folders(experiment: str) -> dict[int, Path]:
    paths = Path(LOG_ROOT, experiment).glob("version_*")
    return {int(path.name[8:]): path for path in paths if path.name[8:].isdigit()}


def next_version(experiment: str) -> int:
    return max(run_folders(experiment), default=-1) + 1


def newest_last_checkpoint(experiment: str) -> tuple[str | None, int | None]:
    """The newest run's ``last.ckpt`` and its N, the folder a resumed run logs into; none: from scratch (a requeued job)."""
    runs = [(version, folder / "checkpoints" / "last.ckpt") for version, folder in run_folders(experiment).items()
            if (folder / "checkpoints" / "last.ckpt").is_file()]
    if not runs:
        print(f"--ckpt_path last: no {LOG_ROOT}/{experiment}/version_*/checkpoints/last.ckpt yet; starting from scratch.",
              file=sys.stderr)
        return None, None
    version, path = max(runs)
    print(f"--ckpt_path last: resuming from {path}", file=sys.stderr)
    return str(path), version
