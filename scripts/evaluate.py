"""Evaluate a checkpoint on the test split and write its predictions to CSV.

    python scripts/evaluate.py lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt
    python scripts/evaluate.py CKPT --config configs/fashion_cnn.yaml --data.data_dir ../shared/data --out preds.csv

CKPT may also be a run folder: its best checkpoint, from its own ``checkpoints/`` (scripts/predict.py's rule).
The datamodule comes from the run's saved ``config.yaml`` (in the run folder, beside ``checkpoints/``) unless
``--config`` is given; extra ``--data.*`` options override it. The checkpoint is loaded with
``weights_only=True``: a checkpoint holding anything but tensors and plain values is refused. Which checkpoint file
was used goes to standard error, the metrics to standard output.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_models import build
from lightning_models.callbacks.predictions import header, input_columns, rows, scores, with_inputs
from lightning_models.checks import ConfigError
from lightning_models.training.checkpoints import choose_checkpoint, load_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py, or a run folder (its best checkpoint)")
    parser.add_argument("--config", default=None, help="experiment config (default: the run's config.yaml)")
    parser.add_argument("--out", default=None, help="CSV path (default: predictions.csv in the run folder)")
    args, overrides = parser.parse_known_args()
    try:
        chosen = choose_checkpoint(args.checkpoint)
        module = load_module(chosen.path)
    except ConfigError as error:  # missing, foreign, damaged, truncated, classes that do not import: one line naming it
        parser.exit(2, f"error: {error}\n")
    named = Path(args.checkpoint)
    run = named if named.is_dir() else chosen.path.resolve().parent.parent  # a run folder's own config.yaml, not the original's
    config = Path(args.config) if args.config else run / "config.yaml"
    if not config.is_file():
        parser.error(f"no config at {config}; pass --config configs/<experiment>.yaml")
    print(chosen.line(), file=sys.stderr)
    try:
        datamodule = build(config, *overrides, stage="predict").datamodule  # the config's data, as train.py builds it
    except ConfigError as error:  # a data path that is not there, a bad override: one line
        parser.exit(2, f"error: {error}\n")
    trainer = pl.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False)
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    outputs = trainer.predict(module, dataloaders=datamodule.test_dataloader())
    predictions = scores(module, torch.cat([batch.float().cpu() for batch in outputs]))
    if not torch.isfinite(predictions).all():  # never a class written beside a NaN probability
        row = int((~torch.isfinite(predictions)).reshape(len(predictions), -1).any(1).nonzero()[0])
        parser.exit(2, f"error: test row {row}: the model's answer is not a finite number, so no predictions were written; "
                       "are the checkpoint's weights NaN or infinite?\n")
    targets = torch.cat([batch[1].cpu() for batch in datamodule.test_dataloader()])
    out = Path(args.out) if args.out else run / "predictions.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        columns, inputs = input_columns(datamodule, "test")
        writer.writerow(header(predictions, targets) + columns)
        writer.writerows(with_inputs(rows(predictions, targets, getattr(datamodule, "class_names", None)), inputs, 0))
    print(json.dumps(metrics, indent=2))
    print(f"predictions: {out}")


if __name__ == "__main__":
    main()
