"""``scripts/train.py STAGE [options]``: ``run()`` for ``fit``, ``evaluate()`` for the other stages, and bad input as
one or two lines with exit status 2 instead of a traceback. Above ``cli``, ``errors`` and ``run``, which it calls."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lightning_fabric.utilities.exceptions import MisconfigurationException

from lightning_models.training.checkpoints import CheckpointError
from lightning_models.training.cli import STAGES
from lightning_models.training.errors import config_error_in
from lightning_models.training.run import evaluate, run


def main(argv: Sequence[str] | None = None) -> None:
    """``scripts/train.py STAGE [options]``: bad input exits with status 2 and one or two lines (no traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STAGES:
        sys.exit(f"usage: scripts/train.py {{{','.join(STAGES)}}} --config CONFIG [options]; --help lists the options")
    stage, args = argv[0], argv[1:]
    try:
        # fit alone may train on several devices: Lightning starts this script again per device (DDP)
        run(*args, several_devices=True) if stage == "fit" else evaluate(stage, *args)
    except FloatingPointError as error:  # NonFiniteLossError: say where and why
        sys.exit(f"error: {error}")
    except MisconfigurationException as error:  # Lightning refusing a Trainer setting
        print(f"error: trainer: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as error:  # ConfigError: a bad option, a bad config value, bad data
        if (cause := config_error_in(error)) is None:
            raise
        options = "" if isinstance(cause, CheckpointError) else f"\n(options: scripts/train.py {stage} --help)"
        print(f"error: {cause}{options}", file=sys.stderr)
        raise SystemExit(2) from None
