"""Validation helpers shared by modules and datamodules: errors that name the bad value and the fix.

They run in ``__init__``, not as jsonargparse annotations (``PositiveInt``...): those check only what the CLI parses,
and the classes are also built from Python (the notebook, the tests, a user's script)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A hyper-parameter or data option that cannot work; raised before any training starts."""


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; choose one of {choices}.")


def check_positive(name: str, value: float | int, integer: bool = False) -> None:
    kind = "a positive integer" if integer else "a positive number"
    if isinstance(value, bool) or (integer and not isinstance(value, int)) or not value > 0:
        raise ConfigError(f"{name}={value!r} is invalid; expected {kind}.")


def check_fraction(name: str, value: float, allow_zero: bool = True) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise ConfigError(f"{name}={value!r} is invalid; expected a fraction in {bound}.")


# Said by every error about a data path that is not there (the rule: lightning_models.training.data_paths).
RELATIVE = "a relative path in a config file is relative to that file's folder, on the command line to the working folder"
