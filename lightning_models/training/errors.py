"""One line for bad input from the exceptions themselves: the innermost cause jsonargparse chained names the value."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from lightning_models.checks import ConfigError


def causes(error: BaseException | None) -> list[BaseException]:
    """``error`` and what it was raised from, outermost first."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:  # exceptions compare by identity
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def config_error_in(error: BaseException | None) -> ConfigError | None:
    """The ConfigError behind ``error``, which jsonargparse may have wrapped."""
    return next((cause for cause in causes(error) if isinstance(cause, ConfigError)), None)


def refused(error: BaseException, config_files: Sequence[str]) -> str:
    """What the parser refused, in one line."""
    cause = causes(error)[-1]
    if isinstance(cause, yaml.YAMLError):
        file = next((path for path in config_files if not valid_yaml(path)), "a config file")
        context = getattr(cause, "context", None)  # what PyYAML was parsing where it began, else the problem's place
        mark = getattr(cause, "context_mark" if context else "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
        return f"{file}: not valid YAML ({context or getattr(cause, 'problem', cause)}{where})"
    if isinstance(cause, ModuleNotFoundError):
        return f"no module named {cause.name!r}; is its folder on PYTHONPATH? (e.g. PYTHONPATH=. from the folder holding it)"
    return " ".join(str(cause).split()) or type(cause).__name__


def valid_yaml(path: str) -> bool:
    try:
        yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return True
