"""Predict on new data with a checkpoint alone: ``python scripts/predict.py CHECKPOINT INPUT [--out FILE]`` (``--help``)."""

from lightning_models.inference.predict_cli import main

if __name__ == "__main__":
    main()
