"""Evaluate a checkpoint on the test split and write its predictions to CSV.

    python scripts/evaluate.py lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt
    python scripts/evaluate.py CKPT --config configs/fashion_cnn.yaml --data.data_dir ../shared/data --out preds.csv

The datamodule comes from the run's saved ``config.yaml`` (beside ``checkpoints/``) unless
``--config`` is given; extra ``--data.*`` options override it. The checkpoint is loaded with
``weights_only=True``: a checkpoint holding anything but tensors and plain values is refused.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_models import build
from lightning_models.callbacks.predictions import header, input_columns, rows, scores, with_inputs
from lightning_models.training.checkpoints import CheckpointError, load_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--config", default=None, help="experiment config (default: the run's config.yaml)")
    parser.add_argument("--out", default=None, help="CSV path (default: predictions.csv beside the checkpoints folder)")
    args, overrides = parser.parse_known_args()
    checkpoint = Path(args.checkpoint)
    config = Path(args.config) if args.config else checkpoint.resolve().parent.parent / "config.yaml"
    try:
        module = load_module(checkpoint)
    except CheckpointError as error:  # missing, foreign, damaged, truncated: one line naming it
        parser.exit(2, f"error: {error}\n")
    if not config.is_file():
        parser.error(f"no config at {config}; pass --config configs/<experiment>.yaml")
    datamodule = build(config, *overrides, stage="predict").datamodule  # the config's data, as train.py builds it
    trainer = pl.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False)
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    outputs = trainer.predict(module, dataloaders=datamodule.test_dataloader())
    predictions = scores(module, torch.cat([batch.float().cpu() for batch in outputs]))
    targets = torch.cat([batch[1].cpu() for batch in datamodule.test_dataloader()])
    out = Path(args.out) if args.out else checkpoint.resolve().parent.parent / "predictions.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        columns, inputs = input_columns(datamodule, "test")
        writer.writerow(header(predictions, targets) + columns)
        writer.writerows(with_inputs(rows(predictions, targets, getattr(datamodule, "class_names", None)), inputs, 0))
    print(json.dumps(metrics, indent=2))
    print(f"predictions: {out}")


if __name__ == "__main__":
    main()
