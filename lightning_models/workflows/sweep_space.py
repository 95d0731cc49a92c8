"""A sweep's search space: the space file (config keys -> distributions, and an objective) checked against the
config's keys before anything runs, and a trial's values drawn from it."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import optuna
import yaml

from lightning_models.workflows.sweep_settings import SweepError


def check_space(path: Path, keys: set[str]) -> dict:
    """The space file, checked: known keys, sound distributions, an objective."""
    try:
        space = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:  # no such file, or not YAML
        raise SweepError(f"--space {path}: cannot read it ({str(error).splitlines()[0]})") from None
    if not space.get("parameters"):
        raise SweepError(f"--space {path}: no 'parameters' to sweep")
    for key, spec in space["parameters"].items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
            raise SweepError(f"--space {path}: unknown key {key!r}; closest valid keys: {', '.join(close) or 'none'}")
        kind, low, high = (spec or {}).get("type"), (spec or {}).get("low"), (spec or {}).get("high")
        if kind not in ("float", "int", "categorical"):
            raise SweepError(f"--space {path}: {key}: type {kind!r}; expected float, int or categorical")
        if kind == "categorical" and not spec.get("choices"):
            raise SweepError(f"--space {path}: {key}: categorical needs a non-empty 'choices' list")
        if kind != "categorical" and not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
            raise SweepError(f"--space {path}: {key}: needs numbers low < high (got low={low!r}, high={high!r})")
        if kind != "categorical" and spec.get("log") and low <= 0:
            raise SweepError(f"--space {path}: {key}: log=true needs low > 0 (got low={low!r})")
    return space


def suggest(trial: optuna.Trial, key: str, spec: dict) -> Any:
    """The trial's value for ``key``, drawn from ``spec`` (one entry of the space's parameters)."""
    if spec["type"] == "categorical":  # Optuna stores plain values only: lists travel as JSON strings
        return json.loads(trial.suggest_categorical(key, [json.dumps(choice) for choice in spec["choices"]]))
    suggest_number = trial.suggest_int if spec["type"] == "int" else trial.suggest_float
    return suggest_number(key, spec["low"], spec["high"], log=bool(spec.get("log")))
