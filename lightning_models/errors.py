"""Short errors for bad command-line input, from the arguments themselves and the classes' signatures: the
config file that is not YAML, or the ``--key value`` the parser refused and what that key accepts. No library
message is read, so a new jsonargparse wording changes nothing here."""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from jsonargparse import Namespace
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_models.checks import ConfigError
from lightning_models.cli import TemplateCLI
from lightning_models.hparams import import_class


class ParserOnly(TemplateCLI):
    """The parser alone, nothing built: ``ParserOnly.parser()``."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        raise _Parser(parser)

    @classmethod
    def parser(cls) -> Any:
        try:
            cls([])
        except _Parser as found:
            return found.args[0]


class _Parser(Exception):
    pass


def refused_argument(args: Sequence[str]) -> str:
    """Which argument the parser refused, found by parsing ever longer prefixes of ``args`` (no library text is
    read): the config file that is not YAML, or the ``--key value`` with the types its class accepts."""
    parser, pairs = ParserOnly.parser(), []
    words = list(args)
    while words:
        word = words.pop(0)
        key, equals, value = word.partition("=")
        if not equals and words and not words[0].startswith("--"):
            value = words.pop(0)
        pairs.append((key, value))
    for count in range(1, len(pairs) + 1):
        key, value = pairs[count - 1]
        if key in ("--config", "-c"):
            try:
                yaml.safe_load(Path(value).read_text())
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
                return f"{value}: not valid YAML ({getattr(error, 'problem', error)}{where})"
            except OSError as error:
                return f"--config {value}: {error.strerror}"
        try:
            parser.parse_args([part for pair in pairs[:count] for part in pair])
        except (argparse.ArgumentError, SystemExit, TypeError, ValueError):
            if key in ("--config", "-c"):
                return f"{value}: a value in this config is not valid (check it with --print_config)"
            return f"{key}: {value!r} is not valid; {accepted(parser, [p for pair in pairs[:count - 1] for p in pair], key, value)}"
    return "invalid arguments"


def accepted(parser: Any, before: list[str], key: str, value: str) -> str:
    """What ``key`` accepts, from the signature of the class it configures (class paths from the parsed config)."""
    config = parser.parse_args(before) if before else parser.get_defaults()
    *owner, name = key.removeprefix("--").replace(".init_args.", ".").split(".")
    node, cls = config, {"trainer": pl.Trainer, "checkpoint": ModelCheckpoint}.get(".".join(owner))
    for part in owner:
        node = node.get(part) if isinstance(node, Namespace) else None
        if isinstance(node, Namespace) and "class_path" in node:
            cls, node = import_class(node.class_path), node.get("init_args")
    if re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", value) and import_class(value) is None:
        return f"cannot import {value!r}"
    if cls is None:
        return "see --help"
    parameters = {name: parameter for klass in reversed(cls.__mro__) if "__init__" in vars(klass)
                  for name, parameter in inspect.signature(klass.__init__).parameters.items()}
    if name not in parameters:
        close = difflib.get_close_matches(name, list(parameters), n=1)
        return f"{cls.__name__} has no argument {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    annotation = parameters[name].annotation
    return f"expected {annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)}"


def config_error_in(error: BaseException | None) -> ConfigError | None:
    """The ConfigError behind ``error``; jsonargparse wraps errors raised while instantiating."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConfigError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
