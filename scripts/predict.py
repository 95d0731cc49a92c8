"""Predict on new data with a checkpoint alone, one CSV row per input (docs/predict.md).

    python scripts/predict.py CHECKPOINT flowers.csv --out predictions.csv --batch-size 256 --device cpu
"""

import argparse
import csv
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from rich.console import Console
from rich.progress import track

from lightning_models.checks import ConfigError
from lightning_models.inference.prediction_inputs import PredictionInputError, image_files
from lightning_models.inference.predictor import Predictor, check_device, load
from lightning_models.training.checkpoints import choose_checkpoint


def write_predictions(predictor: Predictor, inputs: Any, handle: TextIO, batch_size: int, progress: bool = True) -> int:
    """Predict ``inputs`` batch by batch into ``handle`` as CSV; returns the number of rows written."""
    writer, written, path = csv.writer(handle), 0, isinstance(inputs, (str, Path))
    npy = path and Path(inputs).suffix == ".npy" and Path(inputs).is_file()
    total = (len(image_files(inputs)) if path and predictor.image else len(np.load(inputs, mmap_mode="r")) if npy
             else None if path or not hasattr(inputs, "__len__") else len(inputs))  # for the bar
    for ids, batch in track(predictor.batches(inputs, batch_size), "predicting", total=total and math.ceil(total / batch_size),
                            console=Console(stderr=True), disable=not (progress and sys.stderr.isatty()), transient=True):
        predictions = predictor.answer(ids, batch)
        writer.writerows([predictions.header()] * (not written) + predictions.values())
        written += len(predictions)
    if not written:
        raise PredictionInputError(f"{inputs}: no inputs in it to predict.")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py, or a run folder (its best checkpoint)")
    parser.add_argument("inputs", metavar="INPUT", help="a CSV file, a folder, glob or file of images, or a .npy array")
    parser.add_argument("--out", default=None, help="the predictions CSV (default: standard output)")
    parser.add_argument("--batch-size", type=int, default=256, help="inputs per batch (default 256)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    args = parser.parse_args()
    if args.batch_size < 1:
        parser.exit(2, f"error: --batch-size {args.batch_size}: expected a positive integer.\n")
    partial = Path(args.out + ".partial") if args.out else None  # renamed to --out once complete
    try:
        check_device(args.device, "--device ")
        chosen = choose_checkpoint(args.checkpoint)
        predictor = load(chosen.path, device=args.device)
        print(chosen.line(), file=sys.stderr)  # standard error: the CSV may be on standard output
        if partial is None:
            write_predictions(predictor, args.inputs, sys.stdout, args.batch_size, not args.no_progress)
            return
        partial.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w", newline="") as handle:
            written = write_predictions(predictor, args.inputs, handle, args.batch_size, not args.no_progress)
        os.replace(partial, args.out)
    except ConfigError as error:  # a bad checkpoint, input or answer: one line naming it
        parser.exit(2, f"error: {error}\n")
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)  # no half-written predictions left behind
    print(f"predictions: {args.out} ({written} rows)", file=sys.stderr)


if __name__ == "__main__":
    main()
