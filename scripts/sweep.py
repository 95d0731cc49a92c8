"""Optuna sweep of any experiment config (``--help``; docs/sweeps.md)."""

from lightning_models.workflows.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
