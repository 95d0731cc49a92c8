"""The hyperparameters a person compares, under readable names, for TensorBoard's HParams tab and other loggers."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytorch_lightning as pl

from lightning_models.util import import_class

ALWAYS_SHOWN = ("num_features", "num_outputs", "net", "optimizer", "scheduler")


def class_defaults(cls: Any) -> dict[str, Any]:
    """Defaults of the ``__init__`` arguments of ``cls`` and its bases (the subclass's win)."""
    defaults: dict[str, Any] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        try:
            parameters = inspect.signature(klass.__init__ if isinstance(klass, type) else klass).parameters
        except (TypeError, ValueError):
            continue
        defaults.update({name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty})
    return defaults


def same(a: Any, b: Any) -> bool:
    """Equal as a config would write them (YAML lists for tuples); tensors never are."""
    a, b = (list(v) if isinstance(v, tuple) else v for v in (a, b))
    try:
        return bool(a == b)
    except (RuntimeError, ValueError):
        return False


def readable_key(key: str) -> str:
    """``model.init_args.net.init_args.hidden_sizes`` -> ``net.hidden_sizes``."""
    return key.removeprefix("model.init_args.").replace(".init_args.", ".")


def readable_hparams(model: pl.LightningModule, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Injected classes by name (``net: MLP``), arguments unlike their defaults (``lr`` always), then ``extra``."""
    defaults, shown = class_defaults(type(model)), {}
    for key, value in model.hparams.items():
        value = value.as_dict() if hasattr(value, "as_dict") else value  # jsonargparse Namespace
        if key.startswith("_"):  # LightningCLI's internals
            continue
        if isinstance(value, dict) and "class_path" in value:
            shown[key] = value["class_path"].rsplit(".", 1)[-1]
            try:
                arguments = class_defaults(import_class(value["class_path"]))
            except (ImportError, AttributeError, ValueError):
                arguments = {}
            shown |= {f"{key}.{name}": given for name, given in (value.get("init_args") or {}).items()
                      if name == "lr" or name not in arguments or not same(given, arguments[name])}
        elif isinstance(value, type) or callable(value):
            shown[key] = getattr(value, "__name__", type(value).__name__)
        elif key in ALWAYS_SHOWN or key not in defaults or not same(value, defaults[key]):
            shown[key] = value
    return shown | {readable_key(key): json.dumps(value, default=lambda item: item.as_dict())  # lists as JSON text
                    if isinstance(value, (list, tuple, dict)) or hasattr(value, "as_dict") else value
                    for key, value in (extra or {}).items()}


def hparams_summaries(hparams: dict[str, Any], metrics: dict[str, float], first: set[str]) -> list[Any]:
    """The HParams plugin's records; TensorBoard shows five columns, those marked ``differs`` first: the config's own."""
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
