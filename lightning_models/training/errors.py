"""Short errors for bad input, from the arguments themselves and the classes' signatures: the config file that is
not YAML, or the key the parser refused (on the command line or inside a config) and what that key accepts. No
library message is read, so a new jsonargparse wording changes nothing here."""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import inspect
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import Namespace
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_models.checks import ConfigError
from lightning_models.training.cli import TemplateCLI, pairs_of
from lightning_models.training.hparams import import_class
from lightning_models.training.trainer import Trainer

CLASS_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


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


def config_options(tree: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
    """A config's settings as command-line options, a class before its arguments: ``--model={"class_path": ...}``,
    then ``--model.init_args.lr=0.1``."""
    for key, value in tree.items():
        if isinstance(value, dict) and "class_path" in value:
            yield f"--{prefix}{key}", json.dumps({"class_path": value["class_path"]})
            yield from config_options(value.get("init_args") or {}, f"{prefix}{key}.init_args.")
        elif isinstance(value, dict) and value:
            yield from config_options(value, f"{prefix}{key}.")
        else:
            yield f"--{prefix}{key}", value if isinstance(value, str) else json.dumps(value)


def refused_argument(args: Sequence[str]) -> str:
    """Which argument the parser refused, found by parsing ever longer prefixes of ``args`` (a config file's
    settings one by one): the config file that is not YAML, or the key with the types its class accepts."""
    # Why parse again: jsonargparse's own error names neither the file nor, under a class_path, the key (it lists
    # every subclass's complaint); this runs only after a parse has failed, so its cost is that of a few parses.
    parser, done = ParserOnly.parser(), []
    for key, value in pairs_of(args):
        if key in ("--config", "-c"):
            try:
                tree = yaml.safe_load(Path(value).read_text()) or {}
            except yaml.YAMLError as error:
                # PyYAML's fields: what it was parsing where it began (context), else the problem and its place
                context = getattr(error, "context", None)
                mark = getattr(error, "context_mark" if context else "problem_mark", None)
                where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
                return f"{value}: not valid YAML ({context or getattr(error, 'problem', error)}{where})"
            except OSError as error:
                return f"--config {value}: {error.strerror}"
            if not parses(parser, [*done, key, value]) and (refused := refused_in_config(parser, done, tree)) is not None:
                return f"{value}: {refused}"
        elif not parses(parser, [*done, key, value]):
            return f"{key}: {value!r} is not valid; {accepted(parser, done, key, value)}"
        done += [key, value]
    return "invalid arguments (--print_config shows the resolved config)"


SIGNATURES = {"trainer": Trainer, "checkpoint": ModelCheckpoint}


def class_problems(tree: dict, prefix: str = "") -> Iterator[str]:
    """Classes a config names that do not import, and arguments their signatures do not have."""
    for key, value in tree.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and isinstance(item.get("class_path"), str) and "." in item["class_path"]:
                cls = import_class(item["class_path"])
                if cls is None:
                    yield f"{prefix}{key}: {not_importable(item['class_path'])}"
                    continue
                for argument in item.get("init_args") or {}:
                    if (problem := unknown_argument(cls, argument)) is not None:
                        yield f"{prefix}{key}.init_args.{argument}: {problem}"
                yield from class_problems(item.get("init_args") or {}, f"{prefix}{key}.init_args.")
            elif isinstance(item, dict) and f"{prefix}{key}" in SIGNATURES:
                yield from (f"{prefix}{key}.{name}: {problem}" for name in item
                            if (problem := unknown_argument(SIGNATURES[f"{prefix}{key}"], name)) is not None)


def not_importable(class_path: str) -> str:
    """Why ``class_path`` does not import: its package is not found (the PYTHONPATH hint), or the name is not in it."""
    package = class_path.split(".")[0]
    if importlib.util.find_spec(package) is None:
        return (f"cannot import {class_path!r}: no package {package!r}; is its folder on PYTHONPATH? "
                "(e.g. PYTHONPATH=. from the folder holding it)")
    return f"cannot import {class_path!r}"


def refused_in_config(parser: Any, done: list[str], tree: dict) -> str | None:
    """The config's first bad class or argument name; else the one setting without which the config parses."""
    if (problem := next(class_problems(tree), None)) is not None:
        return problem
    options = list(config_options(tree))
    for index, (key, value) in enumerate(options):
        rest = [*done, *(part for other, pair in enumerate(options) if other != index for part in pair)]
        if parses(parser, rest):
            return f"{key.removeprefix('--')}: {value!r} is not valid; {accepted(parser, rest, key, value)}"
    return None


def parses(parser: Any, args: list[str]) -> bool:
    try:
        parser.parse_args(args)
    except (argparse.ArgumentError, SystemExit, TypeError, ValueError):
        return False
    return True


def accepted(parser: Any, before: list[str], key: str, value: str) -> str:
    """What ``key`` accepts, from the signature of the class it configures (class paths from the parsed config)."""
    config = parser.parse_args(before) if before else parser.get_defaults()
    *owner, name = key.removeprefix("--").replace(".init_args.", ".").split(".")
    node, cls = config, SIGNATURES.get(".".join(owner))
    for part in owner:
        node = node.get(part) if isinstance(node, Namespace) else None
        if isinstance(node, Namespace) and "class_path" in node:
            cls, node = import_class(node.class_path), node.get("init_args")
    try:
        given = json.loads(value)
    except ValueError:
        given = value
    if isinstance(given, dict) and isinstance(given.get("class_path"), str):  # a class with its arguments
        chosen, arguments = import_class(given["class_path"]), given.get("init_args") or {}
        if chosen is None:
            return not_importable(given["class_path"])
        for argument in arguments:
            if (problem := unknown_argument(chosen, argument)) is not None:
                return problem
        if missing := [name for name, p in parameters_of(chosen)[0].items() if p.default is p.empty and name not in arguments]:
            return f"{chosen.__name__} requires {', '.join(missing)} (a net gets num_features and num_outputs from the module)"
    if isinstance(given, str) and CLASS_PATH.fullmatch(given) and import_class(given) is None:
        return not_importable(given)
    if cls is None:
        return "see --help"
    return unknown_argument(cls, name) or annotation_of(cls, name)


CLOSED_BASES = (object, torch.nn.Module, pl.LightningModule, pl.LightningDataModule, pl.Callback)


def parameters_of(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """The constructor arguments of ``cls``, following ``**kwargs`` into the bases it is handed to, and whether any
    other name is accepted (``**kwargs`` that reach no base of ours)."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass in CLOSED_BASES:
            return found, False
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters
        found = {name: p for name, p in parameters.items() if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                 } | found  # the subclass's own annotation wins
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return found, False
    return found, True


def unknown_argument(cls: type, name: str) -> str | None:
    parameters, open_ended = parameters_of(cls)
    if name in parameters or open_ended:
        return None
    close = difflib.get_close_matches(name, list(parameters), n=1)
    return f"{cls.__name__} has no argument {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def annotation_of(cls: type, name: str) -> str:
    parameter = parameters_of(cls)[0].get(name)
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return "see --help"
    annotation = parameter.annotation
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
