"""A sweep's settings: what its trials run, the study they share and how its workers behave, as one typed record.
It is written to the sweep's folder as sweep.yaml (less the storage URL, which may hold a password) and read back by
--resume, --summary and the worker processes; a bad input anywhere in a sweep is a SweepError, one line and exit 2."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

OPTUNA_VERSION = optuna.__version__


class SweepError(Exception):
    """Bad sweep input: printed as one line, exit status 2, nothing written."""


@dataclass(kw_only=True)
class SweepSettings:
    """Everything a sweep process needs, in sweep.yaml's order (``url``, the real storage URL, is never written).

    ``objective``: metric and direction (and whatever else the space file's ``objective`` holds); ``sampler``: the
    TPE sampler's name and ``--seed``; ``seeds``/``folds``: each trial's runs; ``extra``: options after ``--``.
    Usage: ``SweepSettings.read(folder)`` for a saved sweep, ``settings.write()`` into its folder.
    """

    config: str
    space: dict[str, Any]
    objective: dict[str, Any]
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "TPESampler", "seed": 0})
    pruner: str = "median"
    seeds: list[int] = field(default_factory=lambda: [0])
    folds: int = 0
    study: str
    folder: str
    experiment: str = ""
    extra: list[str] = field(default_factory=list)
    optuna: str = OPTUNA_VERSION  # the version that made the study
    trials: int = 20
    workers: int = 1
    gpus_per_worker: int = 1  # GPUs each worker process of --workers N sees (CUDA_VISIBLE_DEVICES); 0: all
    timeout_s: float | None = None
    heartbeat_s: int = 30  # a journal file has no heartbeats: 0
    grace_s: int = 120
    max_retry: int = 2
    storage: str | None = None  # as sweep.yaml records it: masked, or env:NAME
    url: str = field(default="", repr=False)  # the real URL; the parent hands it to its workers in the environment
    deadline: float | None = None  # time.time() after which no new trial starts

    @property
    def metric(self) -> str:
        return self.objective["metric"]

    @property
    def direction(self) -> str:
        return self.objective["direction"]

    @classmethod
    def read(cls, folder: str | Path, url: str = "") -> SweepSettings:
        """The settings in ``folder``/sweep.yaml (keys it does not know are left out)."""
        saved = yaml.safe_load(Path(folder, "sweep.yaml").read_text())
        known = {item.name for item in dataclasses.fields(cls)} - {"url"}
        return cls(**{key: value for key, value in saved.items() if key in known}, url=url)

    def write(self) -> None:
        record = {key: value for key, value in dataclasses.asdict(self).items() if key != "url"}
        Path(self.folder, "sweep.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
