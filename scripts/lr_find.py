"""Learning-rate finder: Lightning's range test over an experiment config's own optimizer (docs/workflows.md).

    python scripts/lr_find.py --config configs/fashion_cnn.yaml --data.init_args.data_dir ../shared/data --write fashion_lr.yaml

Other options go to the config, as for ``scripts/train.py fit``. ``--write``: a YAML of the suggested lr to stack
after the same configs; refused (exit status 2) when the suggestion is in doubt, unless ``--force``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from lightning_models.checks import ConfigError
from lightning_models.training.cli import pairs_of
from lightning_models.training.errors import config_error_in
from lightning_models.workflows.lr_find import find_learning_rate, write_override


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min_lr", type=float, default=1e-6, help="lr of the first step (default 1e-6)")
    parser.add_argument("--max_lr", type=float, default=1.0, help="lr of the last step (default 1)")
    parser.add_argument("--num_training", type=int, default=100, help="steps of the test, one lr each (default 100)")
    parser.add_argument("--write", default=None, metavar="PATH", help="a YAML of the suggested lr, to stack after the configs")
    parser.add_argument("--force", action="store_true", help="--write even when the suggestion is in doubt (see the warnings)")
    options, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    files = [value for key, value in pairs_of(rest) if key in ("--config", "-c")]
    if not files:
        parser.exit(2, "error: give the experiment's config: --config configs/<experiment>.yaml\n")
    try:
        found = find_learning_rate(*rest, min_lr=options.min_lr, max_lr=options.max_lr, num_training=options.num_training)
        if found.suggestion is None:
            raise ConfigError(f"lr_find: too few finite losses in {len(found.losses)} steps for a suggestion; "
                              f"raise --num_training or lower --max_lr (curve: {found.folder / 'lr_find.png'})")
        if options.write and found.doubts and not options.force:
            raise ConfigError(f"lr_find: not writing {options.write}: {'; and '.join(found.doubts)}; read the curve "
                              f"({found.folder / 'lr_find.png'}) and pass --force to write it anyway")
        for doubt in found.doubts:
            print(f"warning: {doubt}", file=sys.stderr)
        if options.write and not found.keys:
            raise ConfigError("lr_find: the config has no model.init_args.optimizer.init_args.lr for --write to set")
        if options.write:
            write_override(options.write, found.keys, found.suggestion)
    except ValueError as error:  # ConfigError: ours; jsonargparse wraps it when raised while building
        if (cause := config_error_in(error)) is None:
            raise
        parser.exit(2, f"error: {cause}\n")
    written = f"; wrote {options.write}" if options.write else ""
    print(f"suggested lr {found.suggestion:.3g} (config: {found.config_lr:.3g}); curve: {found.folder / 'lr_find.png'}{written}")
    if options.write:
        print(f"train with it: python scripts/train.py fit {shlex.join(rest)} --config {shlex.quote(options.write)}")


if __name__ == "__main__":
    main()
