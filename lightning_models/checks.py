"""Checks of hyperparameters and data options, run in ``__init__`` (the classes are also built from Python, not only
by the CLI): errors that name the bad value and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A hyperparameter or data option that cannot work; raised before any training starts."""


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; choose one of {choices}.")


def check_positive(name: str, value: float | int, integer: bool = False) -> None:
    if isinstance(value, bool) or (integer and not isinstance(value, int)) or not value > 0:
        raise ConfigError(f"{name}={value!r} is invalid; expected {'a positive integer' if integer else 'a positive number'}.")


def check_fraction(name: str, value: float, allow_zero: bool = True) -> None:
    if not ((value >= 0 if allow_zero else value > 0) and value < 1):
        raise ConfigError(f"{name}={value!r} is invalid; expected a fraction in {'[0, 1)' if allow_zero else '(0, 1)'}.")


# Said by every error about a data path that is not there (the rule: lightning_models.training.cli.resolve_data_paths)
RELATIVE = "a relative path in a config file is relative to that file's folder, on the command line to the working folder"
