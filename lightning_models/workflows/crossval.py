"""K-fold cross-validation: one ordinary run per fold of the non-test rows, a summary, scikit-learn baselines (docs/crossval.md).

    python scripts/crossval.py --config configs/iris_mlp_classifier.yaml --folds 5 --seeds 0-2 -- --trainer.max_epochs 4

Rerun the same command to resume: finished folds are read back, a cut fold resumes from its last.ckpt.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml

from lightning_models.checks import ConfigError
from lightning_models.classification import ClassificationModule
from lightning_models.training.run import build, run
from lightning_models.training.run_folders import LOG_ROOT, named_run_options
from lightning_models.util import format_mean_spread, mean_spread, quiet_logs
from lightning_models.workflows.seeds import parse_seeds, seed_options

SKLEARN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "identity": "identity"}
ACCURACIES = ("val/acc", "test/acc")


class CrossValidationError(ConfigError):
    """Bad cross-validation input: printed as one line, exit status 2, nothing written."""


@dataclass
class CrossValidation:
    """What ``crossval`` returns: its folder, the summary (``summary.json``) and its tables (``summary.md``)."""

    folder: Path
    summary: dict[str, Any]
    table: str


def fold_options(fold: int, folds: int) -> list[str]:
    return [f"--data.init_args.fold={fold}", f"--data.init_args.folds={folds}"]


def fold_datamodule(config: str | Path, fold: int, folds: int, *options: str) -> pl.LightningDataModule:
    """Fold ``fold``'s datamodule, set up for fit (``datamodule.splits``)."""
    datamodule = build(config, *options, *fold_options(fold, folds)).datamodule
    datamodule.setup("fit")
    return datamodule


def why_it_cannot_fold(datamodule: pl.LightningDataModule) -> str | None:
    """None for a datamodule that takes ``fold`` and ``folds``, else why not."""
    kind = type(datamodule)
    if getattr(kind, "why_no_folds", None):
        return f"{kind.__name__} cannot fold: {kind.why_no_folds}"
    if not {"fold", "folds"} <= set(inspect.signature(kind.__init__).parameters):
        return f"{kind.__name__} has no fold argument"
    return None


def prepare(config: str, options: Sequence[str], folds: int, seeds: Sequence[int] | None, name: str) -> dict[str, Any]:
    """The settings (crossval.yaml), every check done before anything is written."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise CrossValidationError(f"--folds {folds!r}: expected an integer of at least 2")
    parts = build(config, *options)
    folder = Path(LOG_ROOT, parts.config.experiment_name, name)
    if reason := why_it_cannot_fold(parts.datamodule):
        raise CrossValidationError(f"{config}: {reason}")
    if not parts.config.test_after_fit:
        raise CrossValidationError("--test_after_fit false: cross-validation needs each fold's validation and test metrics")
    settings = {"config": str(config), "folds": folds, "seeds": list(seeds or [parts.config.seed_everything]),
                "extra": list(options), "experiment": folder.parent.name, "folder": str(folder)}
    saved_path = folder / "crossval.yaml"
    saved = yaml.safe_load(saved_path.read_text()) if saved_path.is_file() else None
    if saved is not None and saved != settings:
        changed = ", ".join(f"{key} {saved.get(key)!r} there, {value!r} now" for key, value in settings.items() if saved.get(key) != value)
        raise CrossValidationError(f"{folder} holds a cross-validation with other settings ({changed}); "
                                   "rerun its own command to resume it, or pass --name for a new one")
    return {**settings, "classification": isinstance(parts.model, ClassificationModule),
            "net": parts.config.model.get("init_args", {}).get("net")}


def baselines(settings: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """scikit-learn's LogisticRegression and MLPClassifier fitted on each fold's training tensors, scored on its val and
    test tensors (classification datamodules with ``splits`` in memory). Builds every fold: a bad one fails before any run."""
    scores: dict[str, list[dict[str, float]]] = {}
    for fold in range(settings["folds"]):
        datamodule = fold_datamodule(settings["config"], fold, settings["folds"], *settings["extra"])
        if not (settings["classification"] and getattr(datamodule, "splits", None)):
            continue
        arrays = {split: (inputs.flatten(1).float().numpy(), targets.numpy()) for split, (inputs, targets) in datamodule.splits.items()}
        for model_name, model in baseline_models(settings).items():
            model.fit(*arrays["train"])
            scores.setdefault(model_name, []).append({f"{split}/acc": float(model.score(*arrays[split])) for split in ("val", "test")})
    return scores


def baseline_models(settings: dict[str, Any]) -> dict[str, Any]:
    """Both on standardised inputs; the MLP takes the config's hidden sizes and activation when its net is our MLP."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    net, mlp = settings["net"] or {}, {}
    if str(net.get("class_path", "")).endswith("nets.MLP") and net.get("init_args", {}).get("hidden_sizes"):
        mlp = {"hidden_layer_sizes": tuple(net["init_args"]["hidden_sizes"])}
        if (activation := SKLEARN_ACTIVATIONS.get(net["init_args"].get("activation"))) is not None:
            mlp["activation"] = activation
    return {"LogisticRegression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            "MLPClassifier": make_pipeline(StandardScaler(), MLPClassifier(**mlp, max_iter=2000, random_state=settings["seeds"][0]))}


def run_fold(settings: dict[str, Any], fold: int, seed: int) -> dict[str, Any]:
    """One fold and seed: its metrics.json when finished, else ``run()`` (resumed from a killed run's last.ckpt)."""
    suffix = f"_seed_{seed}" if len(settings["seeds"]) > 1 else ""
    folder = Path(settings["folder"], f"fold_{fold}{suffix}")
    note = ""
    if (folder / "metrics.json").is_file():
        record, note = json.loads((folder / "metrics.json").read_text()), " (finished earlier)"
    else:
        resume = folder / "checkpoints" / "last.ckpt"
        if resume.is_file():
            note = " (resumed from its last.ckpt)"
        elif folder.exists():  # killed before its first checkpoint: its partial event files would mix with the new ones
            shutil.rmtree(folder)
        record = run(settings["config"], *settings["extra"], *fold_options(fold, settings["folds"]), *seed_options(seed),
                     *named_run_options(folder, {"fold": fold, "seed": seed}),
                     *([f"--ckpt_path={resume.resolve()}"] if note else [])).record
    metrics = ", ".join(f"{key}={value:.4g}" for stage in ("val", "test") for key, value in sorted(record[stage].items()))
    print(f"fold {fold} ({fold + 1} of {settings['folds']}), seed {seed}{note}: {metrics} ({folder})", flush=True)
    return {"fold": fold, "seed": seed, "folder": str(folder), "val": record["val"], "test": record["test"]}


def mean_and_std(rows: list[dict[str, float]]) -> dict[str, Any]:
    """``{"mean": {key: ...}, "std": {key: ...}, "n": count}`` over rows of the same keys."""
    stats = {key: mean_spread([row[key] for row in rows]) for key in rows[0]}
    return {"mean": {key: value[0] for key, value in stats.items()}, "std": {key: value[1] for key, value in stats.items()},
            "n": len(rows)}


def table(head: str, keys: list[str], rows: dict[Any, dict[str, Any]], folder: bool = False) -> list[str]:
    """A markdown table: a row per item (``head``: its name columns), a column per key, then each key's mean ± std."""
    lines = [f"| {head} | {' | '.join(keys)} |" + " run folder |" * folder, "|" + " --- |" * (head.count("|") + 1 + len(keys) + folder)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[key]:.4f}" for key in keys) + " |" + f" {row.get('folder')} |" * folder)
    spreads = " | ".join(format_mean_spread(row[key] for row in rows.values()) for key in keys)
    return [*lines, "| mean ± std |" + " |" * head.count("|") + f" {spreads} |" + " |" * folder]


def markdown(summary: dict[str, Any]) -> str:
    """summary.md: the folds' metrics with mean ± std, then the baselines beside the net on the same folds."""
    keys = list(summary["mean"])
    lines = [f"# Cross-validation {summary['experiment']}/{Path(summary['folder']).name}", "",
             f"`{summary['config']}`, {summary['folds']} folds of the non-test rows (fold k validates, the others train), "
             f"seeds {summary['seeds']}, options: `{' '.join(summary['extra']) or 'none'}`. Each row is one run: the validation "
             "and test metrics of its best checkpoint (every fold has the same test set). Mean ± sample standard deviation "
             "(n - 1) over the n rows.", "",
             *table("fold | seed", keys, {f"{r['fold']} | {r['seed']}": {**r["val"], **r["test"], "folder": r["folder"]}
                                           for r in summary["runs"]}, folder=True)]
    if summary["baselines"]:
        per_fold = {"net": [{key: statistics.fmean(r[key.split("/")[0]][key] for r in summary["runs"] if r["fold"] == fold)
                             for key in ACCURACIES} for fold in range(summary["folds"])],
                    **{name: baseline["folds"] for name, baseline in summary["baselines"].items()}}
        columns = {f"{name} {key}": (name, key) for key in ACCURACIES for name in per_fold}
        lines += ["", "## scikit-learn baselines on the same folds", "",
                  "Fitted on each fold's training tensors (as the net gets them), scored on its validation and test tensors. "
                  "net: the runs above (the mean over seeds per fold).", "",
                  *table("fold", list(columns), {fold: {column: per_fold[name][fold][key] for column, (name, key) in columns.items()}
                                                 for fold in range(summary["folds"])})]
    return "\n".join(lines) + "\n"


@quiet_logs()
def crossval(config: str | Path, *options: str, folds: int = 5, seeds: Sequence[int] | None = None,
             name: str = "crossval") -> CrossValidation:
    """Cross-validate ``config`` (with ``options``, as ``run`` takes them) over ``folds`` folds, once per seed in ``seeds``
    (default: the config's); a rerun reuses finished folds. Bad input raises before anything is written."""
    settings = prepare(str(config), [str(option) for option in options], folds, seeds, name)
    scores = baselines(settings)
    folder = Path(settings["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    saved = {k: v for k, v in settings.items() if k not in ("classification", "net")}
    (folder / "crossval.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    runs = [run_fold(settings, fold, seed) for fold in range(folds) for seed in settings["seeds"]]
    summary = {**saved, "runs": runs, **mean_and_std([{**dict(sorted(r["val"].items())), **dict(sorted(r["test"].items()))} for r in runs]),
               "baselines": {name: {"folds": rows, **mean_and_std(rows)} for name, rows in scores.items()}}
    text = markdown(summary)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "summary.md").write_text(text)
    print(f"summary: {folder / 'summary.md'}\nTensorBoard: tensorboard --logdir {folder} --host 127.0.0.1", flush=True)
    return CrossValidation(folder.resolve(), summary, text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--folds", type=int, default=5, help="folds of the non-test rows (at least 2)")
    parser.add_argument("--seeds", default=None, help="such as 0-4 or 0,2,5-7: each fold trains once per seed")
    parser.add_argument("--name", default="crossval", help="the folder under lightning_logs/<experiment>/")
    args = parser.parse_args(argv[:split])
    try:
        try:
            seeds = parse_seeds(args.seeds) if args.seeds else None
        except ValueError as error:
            raise CrossValidationError(f"--{error}") from None
        result = crossval(args.config, *argv[split + 1 :], folds=args.folds, seeds=seeds, name=args.name)
    except (ConfigError, argparse.ArgumentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n" + result.table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
