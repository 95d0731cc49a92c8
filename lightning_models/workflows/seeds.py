"""One meaning of "seed" for every command that runs a configuration over seeds (docs/reproducing.md).

    from lightning_models.workflows.seeds import seed_options
    run("configs/iris_mlp_classifier.yaml", *seed_options(3))   # seed 3: init, dropout, batch order, augmentation

Seed ``n`` is ``--seed_everything n``. Lightning's ``seed_everything`` sets the weights' initialisation and dropout,
and the datamodules draw batch order, augmentation and fresh samples from their own ``seed`` plus the run's seed
(``datamodules.tensor.order_seed``). The data split follows the datamodule's ``seed`` alone, so every seed is
tested on the same rows; ``vary_split=True`` also moves the datamodule's ``seed`` by ``n`` (a new split per seed).
``lab/reproduce.py``, ``sweep --seeds``, ``crossval --seeds`` and ``compare --seeds`` all call ``seed_options``.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml

from lightning_models.training.experiments import parse_seeds

__all__ = ["parse_seeds", "seed_options", "datamodule_seed"]


def seed_options(seed: int, config: str | Path | None = None, vary_split: bool = False) -> list[str]:
    """The options that make a run seed ``seed`` of ``config``; ``vary_split`` (needs ``config``) also moves its split."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed {seed!r}: expected an integer >= 0")
    options = [f"--seed_everything={seed}"]
    if vary_split:
        if config is None:
            raise ValueError("vary_split needs the config, whose datamodule seed it moves")
        base = datamodule_seed(config)
        if base is not None:
            options.append(f"--data.init_args.seed={base + seed}")
    return options


def datamodule_seed(config: str | Path) -> int | None:
    """The datamodule's ``seed`` in ``config`` (its ``data.init_args.seed``, else the class's default), or None."""
    data = (yaml.safe_load(Path(config).read_text()) or {}).get("data") or {}
    base = (data.get("init_args") or {}).get("seed")
    if base is None and data.get("class_path"):
        module, _, name = data["class_path"].rpartition(".")
        parameter = inspect.signature(getattr(importlib.import_module(module), name)).parameters.get("seed")
        base = getattr(parameter, "default", None)
    return int(base) if isinstance(base, int) and not isinstance(base, bool) else None
