"""The experiment registry, ``configs/experiments.yaml`` (its header explains the fields): ``load_registry(path)``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lightning_models.checks import ConfigError

REGISTRY = Path(__file__).resolve().parents[2] / "configs" / "experiments.yaml"
REQUIRED = ("what", "group", "default_keys")
CHECK_KINDS = ("floor", "ceiling", "near")


@dataclass(frozen=True)
class Experiment:
    """One registry entry, its paths absolute (relative ones are the registry's folder's)."""

    name: str
    what: str
    group: str
    default_keys: tuple[str, ...]
    default_config: Path
    source_config: Path | None = None
    source_keys: tuple[str, ...] | None = None
    texts: str | None = None
    metric: str | None = None
    reported: str | None = None
    sklearn_key: str | None = None
    digits: int = 3
    check: dict[str, Any] | None = None
    source_figure: dict[str, Any] | None = None
    differs_because: str | None = None
    seeds: str = "0-4"
    data_files: dict[str, str] = field(default_factory=dict)
    needs_data_dir: bool = False
    quick_overrides: tuple[str, ...] = ()
    tested_by: str | None = None

    def config(self, recipe: str) -> Path:
        """``recipe``: ``default`` or ``source``."""
        if recipe == "source" and self.source_config is None:
            raise ConfigError(f"experiment {self.name!r} has no source recipe (no source_keys in the registry).")
        return self.source_config if recipe == "source" else self.default_config

    def data_overrides(self, data_dir: str | Path | None = None) -> list[str]:
        """Options that point the datamodule at the experiment's files, from any working folder."""
        return [f"--data.init_args.{argument}={path}" for argument, path in self.data_files.items()] + (
            [f"--data.init_args.data_dir={data_dir}"] if self.needs_data_dir and data_dir is not None else [])

    def record(self) -> dict[str, Any]:
        """The entry as JSON values (paths as text)."""
        return {item.name: str(value) if isinstance(value := getattr(self, item.name), Path) else value for item in fields(self)}


ENTRY_FIELDS = {item.name for item in fields(Experiment)} - {"name", "default_config"} | {"config"}


def load_registry(path: str | Path = REGISTRY) -> list[Experiment]:
    """The entries of a registry file, in file order; a bad entry raises a one-line ``ConfigError``."""
    path = Path(path).resolve()
    try:
        entries = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"experiment registry {path}: {error.strerror}") from None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"experiment registry {path}: expected a mapping of experiment names to entries")
    return [experiment(name, entry, path.parent, f"{path}: experiment {name!r}") for name, entry in entries.items()]


def experiment(name: str, entry: Any, folder: Path, where: str) -> Experiment:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {entry!r}")
    if unknown := sorted(set(entry) - ENTRY_FIELDS):
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(sorted(ENTRY_FIELDS))}")
    if missing := [key for key in REQUIRED if key not in entry]:
        raise ConfigError(f"{where}: missing {', '.join(missing)} (required: {', '.join(REQUIRED)})")
    values = {key: tuple(value) if key.endswith(("_keys", "_overrides")) and value is not None else value
              for key, value in entry.items() if key not in ("config", "source_config", "data_files")}
    default_config = folder / entry.get("config", f"{name}.yaml")
    source_config = folder / entry.get("source_config", f"source/{name}.yaml") if entry.get("source_keys") else None
    for config in filter(None, (default_config, source_config)):
        if not config.is_file():
            raise ConfigError(f"{where}: no config {config} (paths are relative to the registry's folder)")
    values["seeds"] = str(entry.get("seeds", Experiment.seeds))
    try:
        parse_seeds(values["seeds"])
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    check = entry.get("check")
    if check is not None and not ("metric" in check and any(kind in check for kind in CHECK_KINDS)):
        raise ConfigError(f"{where}: check {check!r} needs a metric and one of {', '.join(CHECK_KINDS)}")
    data_files = {argument: str((folder / value).resolve()) for argument, value in (entry.get("data_files") or {}).items()}
    return Experiment(name=name, default_config=default_config, source_config=source_config, data_files=data_files, **values)


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5"`` -> [0, 2, 5]; ``"3"`` -> [3]."""
    seeds: list[int] = []
    for part in (part.strip() for part in str(text).split(",")):
        first, dash, last = part.partition("-")
        if not (first.isdigit() and (not dash or last.isdigit())) or (dash and int(last) < int(first)):
            raise ValueError(f"seeds {text!r}: {part!r} is not a seed or a range; give e.g. 0-4, 0,1,2 or 0")
        seeds += [s for s in range(int(first), int(last or first) + 1) if s not in seeds]
    return seeds


def __getattr__(name: str) -> Any:
    """``EXPERIMENTS``, the registry read on first use (importing this module reads no file)."""
    if name != "EXPERIMENTS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = load_registry()
    return globals()[name]
