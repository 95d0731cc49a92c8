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
    """The first logger's ``version_N`` when it is TensorBoard or CSV, else the trainer's ``default_root_dir``,
    which the CLI sets to ``lightning_logs/<experiment>/version_N`` (no logger, or MLflow first)."""
    first = trainer.loggers[0] if trainer.loggers else None
    return Path(first.log_dir) if isinstance(first, (TensorBoardLogger, CSVLogger)) else Path(trainer.default_root_dir)


def named_run_options(folder: str | Path, hparams: dict[str, Any]) -> list[str]:
    """Options for a run that one of many makes (a sweep's trial, a cross-validation's fold): TensorBoard logs into
    ``folder`` (``lightning_logs/<experiment>/<name>/<run>``), ``hparams`` join its HParams, no progress bar or summary."""
    folder = Path(folder)
    logger = {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
              "init_args": {"save_dir": LOG_ROOT, "name": str(folder.parent.relative_to(LOG_ROOT)), "version": folder.name,
                            "default_hp_metric": False}}
    return [f"--trainer.logger={json.dumps(logger)}", f"--log_hparams={json.dumps(hparams)}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def run_folders(experiment: str, root: str | Path = LOG_ROOT) -> dict[int, Path]:
    """``<root>/<experiment>/version_N`` folders by N."""
    found = {}
    for path in Path(root, experiment).glob("version_*"):
        if (suffix := path.name.removeprefix("version_")).isdigit():
            found[int(suffix)] = path
    return found


def next_version(experiment: str, root: str | Path = LOG_ROOT) -> int:
    return max(run_folders(experiment, root), default=-1) + 1


def newest_last_checkpoint(experiment: str, root: str | Path = LOG_ROOT) -> tuple[str | None, int | None]:
    """``fit --ckpt_path last``: the ``last.ckpt`` of the newest ``<root>/<experiment>/version_N`` that has one,
    and N, so that the resumed run logs and checkpoints into the same folder. Without one, the run starts from
    scratch (as Lightning does for ``last``), which suits requeued cluster jobs."""
    runs = [(version, folder / "checkpoints" / "last.ckpt") for version, folder in run_folders(experiment, root).items()
            if (folder / "checkpoints" / "last.ckpt").is_file()]
    if not runs:
        print(f"--ckpt_path last: no {root}/{experiment}/version_*/checkpoints/last.ckpt yet; starting from scratch.",
              file=sys.stderr)
        return None, None
    version, path = max(runs)
    print(f"--ckpt_path last: resuming from {path}", file=sys.stderr)
    return str(path), version
