"""``train.py test`` then ``train.py predict`` on a checkpoint with its run's own ``config.yaml``: the metrics as JSON on
standard output, the test split's predictions as CSV (docs/predict.md's layout).

    python scripts/evaluate.py lightning_logs/iris_mlp_classifier/version_0
    python scripts/evaluate.py CKPT --config configs/fashion_cnn.yaml --data.data_dir ../shared/data --out preds.csv
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

from lightning_models.checks import ConfigError
from lightning_models.training.checkpoints import choose_checkpoint, load_module
from lightning_models.training.run import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py, or a run folder (its best checkpoint)")
    parser.add_argument("--config", default=None, help="experiment config (default: the run's config.yaml)")
    parser.add_argument("--out", default=None, help="CSV path (default: predictions.csv in the run folder)")
    args, overrides = parser.parse_known_args()
    try:
        chosen = choose_checkpoint(args.checkpoint)
        load_module(chosen.path)  # a checkpoint whose classes do not import: one line naming the fix
        run = Path(args.checkpoint) if Path(args.checkpoint).is_dir() else chosen.path.resolve().parent.parent
        config = Path(args.config) if args.config else run / "config.yaml"
        if not config.is_file():
            parser.error(f"no config at {config}; pass --config configs/<experiment>.yaml")
        print(chosen.line(), file=sys.stderr)
        writer = {"class_path": "lightning_models.callbacks.predictions.PredictionWriter",
                  "init_args": {"path": str(args.out or run / "predictions.csv")}}
        options = [config, f"--ckpt_path={chosen.path}", "--trainer.logger=false", *overrides]
        with contextlib.redirect_stdout(sys.stderr), tempfile.TemporaryDirectory() as scratch:  # stdout: the metrics alone
            metrics = evaluate("test", *options, f"--trainer.default_root_dir={scratch}")[0]  # no new run folder
            evaluate("predict", *options, "--data.init_args.predict_split=test", f"--trainer.callbacks+={json.dumps(writer)}")
    except ConfigError as error:  # a bad checkpoint, data path or override; a NaN answer: one line
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
