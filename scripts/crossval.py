"""K-fold cross-validation of any experiment config whose datamodule can fold (``--help`` for the options; the code
lives in ``lightning_models.workflows.crossval``).

    python scripts/crossval.py --config configs/iris_mlp_classifier.yaml --folds 5
"""

from lightning_models.workflows.crossval import main

if __name__ == "__main__":
    raise SystemExit(main())
