"""``scripts/train.py STAGE [options]``: ``run()`` and its summary, or ``evaluate()``; bad input exits 2 in one line."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities import rank_zero_only

from lightning_models.training.checkpoints import CheckpointError
from lightning_models.training.cli import STAGES
from lightning_models.training.errors import config_error_in
from lightning_models.training.run import RunResult, evaluate, run


def print_summary(result: RunResult) -> None:
    """A run's summary; on stderr, a warning for classes never predicted on the validation rows."""
    record, folder, classes = result.record, result.folder, result.record.get("classes")
    folder = folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder  # as the logger names it
    summary = ", ".join(f"{key}{f' ({label})' if (label := result.labels.get(key.split('/', 1)[-1])) else ''}={value:.4g}"
                        for stage in ("test", "val") for key, value in sorted(result.metrics.get(stage, {}).items()))
    lines = [f"\n{record['experiment']}: {summary or 'no validation or test metrics logged'}"]
    if classes:  # rows per class and split, what the model predicted, the majority-class baseline
        for title, counts, splits in (("class rows", classes["rows"], ("train", "val", "test")),
                                      ("predicted", classes["predicted"], ("val", "test"))):
            if splits := [split for split in splits if split in counts]:
                lines.append(f"{title} {'/'.join(splits)}: " + ", ".join(
                    f"{name} {'/'.join(str(counts[split][index]) for split in splits)}" for index, name in enumerate(classes["names"])))
        baseline = ", ".join(f"{split} {value:.4g}" for split, value in classes["majority_baseline_acc"].items())
        lines.append(f"majority-class baseline acc (always {classes['majority_class']}, the training rows' majority): {baseline}")
    if any((dropped := record.get("dropped_rows") or {}).values()):
        lines.append("rows dropped for a missing value: " + ", ".join(f"{split} {count}" for split, count in dropped.items()))
    lines += [f"precision: {record['precision']} on {record['machine']['gpu'] or record['machine']['cpu']}",
              f"run directory: {folder}", f"metrics: {folder / 'metrics.json'}"]
    if result.tensorboard:
        lines.append(f"TensorBoard: tensorboard --logdir {folder} --host 127.0.0.1")
    print("\n".join(lines))
    rows = (classes or {}).get("rows", {}).get("val")
    if rows and "val" in classes["predicted"]:
        if missing := [name for name, count, guessed in zip(classes["names"], rows, classes["predicted"]["val"]) if count and not guessed]:
            print(f"warning: on the {sum(rows)} validation rows the model never predicted {', '.join(missing)}; compare its "
                  "accuracy with the majority-class baseline above", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STAGES:
        sys.exit(f"usage: scripts/train.py {{{','.join(STAGES)}}} --config CONFIG [options]; --help lists the options")
    stage, args = argv[0], argv[1:]
    try:
        if stage != "fit":
            evaluate(stage, *args)
        elif (result := run(*args, several_devices=True)) and rank_zero_only.rank == 0:  # DDP: this script runs per device
            print_summary(result)
    except FloatingPointError as error:  # NonFiniteLossError: say where and why
        sys.exit(f"error: {error}")
    except MisconfigurationException as error:  # Lightning refusing a Trainer setting
        print(f"error: trainer: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as error:  # ConfigError: a bad option, a bad config value, bad data
        if (cause := config_error_in(error)) is None:
            raise
        options = "" if isinstance(cause, CheckpointError) else f"\n(options: scripts/train.py {stage} --help)"
        print(f"error: {cause}{options}", file=sys.stderr)
        raise SystemExit(2) from None
