"""Predict on new data with a checkpoint alone (neither the training data nor the config is needed).

    python scripts/predict.py lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt flowers.csv
    python scripts/predict.py CKPT new_images/ --out predictions.csv      # a folder (or a glob: 'shots/*.png')
    python scripts/predict.py CKPT points.npy --batch-size 1024

INPUT: a CSV file with a header row (columns by name, in any order; extra columns ignored), a folder, glob or
file of images, or a ``.npy`` array. One output row per input: its id (row number or file name), the predicted
class, its probability and every class's probability; or the predicted values. Without ``--out`` the CSV goes to
standard output. Inputs are read, predicted and written a batch at a time, so memory stays bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lightning_models.checks import ConfigError
from lightning_models.inference.prediction_inputs import PredictionInputError
from lightning_models.inference.predictor import Predictor, check_device, load
from lightning_models.training.checkpoints import choose_checkpoint


@contextlib.contextmanager
def output(path: str | None) -> Iterator[TextIO]:
    """The CSV's handle: standard output, or ``path`` written as ``path.partial`` and renamed once complete."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "w", newline="") as handle:
            yield handle
    except BaseException:
        partial.unlink(missing_ok=True)  # no half-written predictions left behind
        raise
    os.replace(partial, target)


def write_predictions(predictor: Predictor, inputs: Any, handle: TextIO, batch_size: int, progress: bool = True) -> int:
    """Predict ``inputs`` batch by batch into ``handle`` as CSV; returns the number of rows written."""
    writer, written = csv.writer(handle), 0
    bar = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), disable=not (progress and sys.stderr.isatty()), transient=True)
    with bar:
        task = bar.add_task("predict", total=predictor.count(inputs))
        for ids, batch in predictor.batches(inputs, batch_size):
            predictions = predictor.answer(ids, batch)
            if not written:
                writer.writerow(predictions.header())
            writer.writerows(predictions.values())
            written += len(predictions)
            bar.advance(task, len(predictions))
    if not written:
        raise PredictionInputError(f"{inputs}: no inputs in it to predict.")
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/predict.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py, or a run folder (its best checkpoint)")
    parser.add_argument("inputs", metavar="INPUT", help="a CSV file, a folder, glob or file of images, or a .npy array")
    parser.add_argument("--out", default=None, help="the predictions CSV (default: standard output)")
    parser.add_argument("--batch-size", type=int, default=256, help="inputs per batch (default 256)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.exit(2, f"error: --batch-size {args.batch_size}: expected a positive integer.\n")
    try:
        check_device(args.device, "--device ")
        chosen = choose_checkpoint(args.checkpoint)
        predictor = load(chosen.path, device=args.device)
        print(chosen.line(), file=sys.stderr)  # standard error: the CSV may be on standard output
        with output(args.out) as handle:
            written = write_predictions(predictor, args.inputs, handle, args.batch_size, not args.no_progress)
    except ConfigError as error:  # CheckpointError, PredictionInputError, PredictionOutputError: one line naming it
        parser.exit(2, f"error: {error}\n")
    if args.out:
        print(f"predictions: {args.out} ({written} rows)", file=sys.stderr)
