"""Is B better than A? A verdict per metric between run folders, folders of runs or configs run now (docs/compare.md).

    python scripts/compare.py lightning_logs/iris_mlp_classifier/crossval lightning_logs/iris_mlp_classifier/crossval_lr
    python scripts/compare.py "configs/iris_mlp_classifier.yaml --model.init_args.optimizer.init_args.lr=0.03" \\
        configs/iris_mlp_classifier.yaml --seeds 0-4 -- --trainer.max_epochs=4   # after --: options for every config side
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lightning_models.util import quiet_logs
from lightning_models.workflows.compare import CompareError, compare
from lightning_models.workflows.seeds import parse_seeds


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sides", nargs="+", help="run folders, folders of runs, or \"config.yaml --options\"")
    parser.add_argument("--seeds", default="0-4", help="seeds of the config sides, such as 0-4 or 0,2,5")
    parser.add_argument("--vary-split", action="store_true", help="each seed also draws its own data split")
    parser.add_argument("--name", default="compare", help="folder of the config sides' runs, under lightning_logs/<experiment>/")
    parser.add_argument("--out", default=None, help="folder for compare.md/.csv/.png (default: lightning_logs/compare/<name>)")
    args = parser.parse_args(argv[:split])
    try:
        try:
            seeds = parse_seeds(args.seeds)
        except ValueError as error:
            raise CompareError(f"--{error}") from None
        sides = [shlex.split(side) if (side.split() or [""])[0].endswith((".yaml", ".yml")) else side for side in args.sides]
        with quiet_logs():
            result = compare(*sides, seeds=seeds, options=argv[split + 1 :], name=args.name, vary_split=args.vary_split)
    except (CompareError, argparse.ArgumentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("lightning_logs", "compare", args.name))
    written = result.write(out)
    print("\n" + result.markdown() + "\nwrote " + ", ".join(str(path) for path in written))
    if out / "curves.png" not in written:
        print("no curves.png: none of the runs has TensorBoard event files with val/ scalars")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
