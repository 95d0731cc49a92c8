"""K-fold cross-validation of any experiment config whose datamodule can fold (``--help``; docs/crossval.md)."""

from lightning_models.workflows.crossval import main

if __name__ == "__main__":
    raise SystemExit(main())
