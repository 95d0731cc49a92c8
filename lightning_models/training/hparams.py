"""The hyperparameters a person compares, under readable names, for TensorBoard's HParams tab and other loggers."""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import pytorch_lightning as pl

ALWAYS_SHOWN = ("num_features", "num_outputs", "net", "optimizer", "scheduler")


def class_defaults(cls: Any) -> dict[str, Any]:
    """Default values of the ``__init__`` arguments of ``cls`` and its bases (the subclass's win)."""
    defaults: dict[str, Any] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        try:
            parameters = inspect.signature(klass.__init__ if isinstance(klass, type) else klass).parameters
        except (TypeError, ValueError):
            continue
        defaults.update({name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty})
    return defaults


def import_class(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def same(a: Any, b: Any) -> bool:
    """Equal as a config would write them (YAML lists for tuples)."""
    a, b = (list(v) if isinstance(v, tuple) else v for v in (a, b))
    try:
        return bool(a == b)
    except (RuntimeError, ValueError):  # tensors
        return False


def readable_key(key: str) -> str:
    """A command-line key as the HParams tab names it: ``model.init_args.net.init_args.hidden_sizes`` ->
    ``net.hidden_sizes``, ``data.init_args.batch_size`` -> ``data.batch_size``."""
    return key.removeprefix("model.init_args.").replace(".init_args.", ".")


def readable_hparams(model: pl.LightningModule, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each injected class by its name (``net: MLP``, ``optimizer: AdamW``), ``<name>.<argument>`` and the
    module's own arguments where they differ from the defaults (``lr`` always), then ``extra`` (a sweep's
    choices, by ``readable_key``); LightningCLI's internals (``_instantiator``, ``_class_path``) left out."""
    defaults = class_defaults(type(model))
    shown: dict[str, Any] = {}
    for key, value in model.hparams.items():
        value = value.as_dict() if hasattr(value, "as_dict") else value  # jsonargparse Namespace
        if key.startswith("_"):
            continue
        if isinstance(value, dict) and "class_path" in value:
            shown[key] = value["class_path"].rsplit(".", 1)[-1]
            arguments = class_defaults(import_class(value["class_path"]))
            for name, given in (value.get("init_args") or {}).items():
                if name == "lr" or name not in arguments or not same(given, arguments[name]):
                    shown[f"{key}.{name}"] = given
        elif isinstance(value, type) or callable(value):
            shown[key] = getattr(value, "__name__", type(value).__name__)
        elif key in ALWAYS_SHOWN or key not in defaults or not same(value, defaults[key]):
            shown[key] = value  # sizes, and an injected part left out (scheduler: None), are shown too
    return {**shown, **{readable_key(key): plain(value) for key, value in (extra or {}).items()}}


def plain(value: Any) -> Any:
    """A value hparams.yaml and the HParams tab can hold: a list or mapping (a sweep's choice of callbacks, say, which
    jsonargparse hands over as Namespaces) as its JSON text."""
    if isinstance(value, (list, tuple, dict)) or hasattr(value, "as_dict"):
        def unwrap(item: Any) -> Any:
            item = item.as_dict() if hasattr(item, "as_dict") else item
            if isinstance(item, dict):
                return {key: unwrap(inner) for key, inner in item.items()}
            return [unwrap(inner) for inner in item] if isinstance(item, (list, tuple)) else item
        return json.dumps(unwrap(value))
    return value


def hparams_summaries(hparams: dict[str, Any], metrics: dict[str, float], first: set[str]) -> list[Any]:
    """The HParams plugin's three records (experiment, session start, session end) for TensorBoard. TensorBoard orders the
    columns by ``differs`` (marked first), then by name, and shows the first five: the names in ``first`` (the config's
    own hyperparameters) are marked, so they come before the rest (the machine stamp), which would sort ahead by name."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams as summaries

    values = {key: value if isinstance(value, (bool, int, float, str)) else str(value) for key, value in hparams.items()}
    experiment, start, end = summaries(values, metrics)
    content = experiment.value[0].metadata.plugin_data
    data = plugin_data_pb2.HParamsPluginData.FromString(content.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in first
    content.content = data.SerializeToString()
    return [experiment, start, end]
