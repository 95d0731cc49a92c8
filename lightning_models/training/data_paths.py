"""One rule for relative data paths, the registry's: a relative path is relative to the file that names it (a config
file's folder), and on the command line to the working folder. So a config runs from any working folder, and the run's
config.yaml holds the absolute path it used. A datamodule lists its path arguments in ``path_arguments``."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import yaml
from jsonargparse import Namespace


def path_arguments(class_path: str) -> tuple[str, ...]:
    module, _, name = class_path.rpartition(".")
    try:
        return tuple(getattr(getattr(importlib.import_module(module), name), "path_arguments", ()))
    except (ImportError, AttributeError, ValueError):
        return ()  # the parser has named the class already, or will


def set_in(config_file: str, argument: str) -> bool:
    """Does this config file set the datamodule's ``argument`` (``data.init_args.<argument>`` or ``data.<argument>``)?"""
    try:
        tree = yaml.safe_load(Path(config_file).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    data = tree.get("data") if isinstance(tree, dict) else None
    if not isinstance(data, dict):
        return False
    return argument in data or argument in (data.get("init_args") or {})


def base_folder(pairs: Sequence[tuple[str, str]], argument: str) -> str:
    """The folder ``argument``'s relative value is relative to: that of the last config file that sets it, or the working
    folder when the command line sets it after it (or nothing sets it: the class default, read from the working folder);
    ``pairs``: the command line as ``cli.pairs_of`` reads it."""
    base = os.getcwd()
    for key, value in pairs:
        if key in ("--config", "-c"):
            if set_in(value, argument):
                base = os.path.dirname(os.path.abspath(value))  # abspath: a symlinked configs/ stays where it is named
        elif key in (f"--data.init_args.{argument}", f"--data.{argument}") or (key == "--data" and argument in value):
            base = os.getcwd()
    return base


def resolve_data_paths(config: Namespace, pairs: Sequence[tuple[str, str]]) -> None:
    """Make the datamodule's relative path arguments absolute, each against the folder of the file that named it (the
    working folder for the command line), so the run's config.yaml reads the same data from any working folder."""
    data = config.get("data")
    if not isinstance(data, Namespace) or not data.get("class_path"):
        return
    init_args = data.get("init_args") or Namespace()
    for argument in path_arguments(data.class_path):
        value = init_args.get(argument)
        if isinstance(value, str) and value and not os.path.isabs(value):
            init_args[argument] = os.path.normpath(os.path.join(base_folder(pairs, argument), value))
