"""One meaning of "seed" (docs/reproducing.md): seed ``n`` is ``--seed_everything n`` (init, dropout, batch order,
augmentation); the split follows the datamodule's own ``seed``, which ``vary_split`` moves by ``n`` too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_models.training.experiments import parse_seeds

__all__ = ["parse_seeds", "seed_options", "datamodule_seed"]


def seed_options(seed: int, config: Any = None, vary_split: bool = False) -> list[str]:
    """The options that make a run seed ``seed`` (``config``: a path or a ``build(...).config``)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed {seed!r}: expected an integer >= 0")
    if vary_split and config is None:
        raise ValueError("vary_split needs the config, whose datamodule seed it moves")
    base = datamodule_seed(config) if vary_split else None
    return [f"--seed_everything={seed}", *([f"--data.init_args.seed={base + seed}"] if base is not None else [])]


def datamodule_seed(config: Any) -> int | None:
    """The datamodule's resolved ``seed``, or None."""
    if isinstance(config, (str, Path)):
        from lightning_models.training.run import build

        config = build(config).config
    base = (config.get("data") or {}).get("init_args", {}).get("seed")
    return base if isinstance(base, int) and not isinstance(base, bool) else None
