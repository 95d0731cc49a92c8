"""Hyperparameter sweep of any experiment config with Optuna (``--help`` for the options; the code lives in
``lightning_models.workflows.sweep``).

    python scripts/sweep.py --config configs/iris_mlp_classifier.yaml --space configs/sweeps/iris_mlp_classifier.yaml
"""

from lightning_models.workflows.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
