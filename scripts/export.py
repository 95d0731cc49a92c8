"""Export a checkpoint's model, preprocessing included, for use outside the template.

    python scripts/export.py CHECKPOINT --format onnx|torch-export|numpy [--out DIR] [--force]

DIR (default: export/) receives model.onnx or model.pt2 (outputs, and an autoencoder's codes, as one graph), or
model.npz (+ encoder.npz for the codes) and numpy_forward.py, and model.json: the input columns or image shape,
class names, output columns and file names. ``lightning_models.inference.export.load_export(DIR).predict(inputs)`` runs it on
the inputs ``lightning_models.load(CHECKPOINT).predict`` takes. numpy takes only MLP and AutoEncoder nets on tables; other
nets are refused with the formats that can take them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lightning_models.checks import ConfigError
from lightning_models.inference.export import FORMATS, export
from lightning_models.training.checkpoints import choose_checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py, or a run folder (its best checkpoint)")
    parser.add_argument("--format", required=True, choices=list(FORMATS))
    parser.add_argument("--out", default="export", help="output folder (default: export/)")
    parser.add_argument("--force", action="store_true", help="replace an export of another checkpoint in --out")
    args = parser.parse_args(argv)
    try:
        chosen = choose_checkpoint(args.checkpoint)
        description = export(chosen.path, args.out, args.format, force=args.force)
    except ConfigError as error:  # a bad checkpoint, a refused net or destination: one line
        parser.exit(2, f"error: {error}\n")
    print(chosen.line(), file=sys.stderr)
    checked = description["checked"]
    print(f"wrote {args.out}/: {', '.join(description['files'].values())}, model.json; checked against the checkpoint on "
          f"{checked['random_inputs']} random inputs: max abs difference {checked['max_abs_difference']:.2g}")


if __name__ == "__main__":
    main()
