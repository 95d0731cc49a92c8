"""Predict on new data with a checkpoint alone, one CSV row per input (docs/predict.md).

    python scripts/predict.py CHECKPOINT flowers.csv --out predictions.csv --batch-size 256 --device cpu
"""

import argparse
import os
import sys
from pathlib import Path

from lightning_models.checks import ConfigError
from lightning_models.inference.predictor import check_device, load, write_predictions
from lightning_models.training.checkpoints import choose_checkpoint


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
