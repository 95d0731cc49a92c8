"""K-fold cross-validation: one ordinary run per fold of the non-test rows, a summary, and scikit-learn baselines.

    python scripts/crossval.py --config configs/iris_mlp_classifier.yaml --folds 5
    python scripts/crossval.py --config ... --folds 5 --seeds 0,1,2           # each fold trains once per seed
    python scripts/crossval.py --config ... --folds 5 -- --trainer.max_epochs 4   # after --: options for every fold

    from lightning_models.workflows.crossval import crossval
    result = crossval("configs/iris_mlp_classifier.yaml", "--trainer.max_epochs=4", folds=5)
    result.summary["mean"]["val/acc"], result.summary["std"]["val/acc"], result.table

The datamodule splits its non-test rows into ``folds`` seeded stratified folds (``--data.init_args.fold k
--data.init_args.folds K``): fold k validates, the others train, the test set stays as it is. Fold k's run folder is
lightning_logs/<experiment>/<name>/fold_<k> (fold_<k>_seed_<s> with several seeds), so TensorBoard shows the folds
side by side; crossval.yaml (the settings), summary.md and summary.json go beside them.

Resume: run the same command again. A fold whose metrics.json exists is finished and its numbers are reused; a
fold that was cut short resumes from its checkpoints/last.ckpt (or starts again when it has none); the rest run.
Other settings in the same folder are refused: pass --name for a new cross-validation.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import logging
import shutil
import statistics
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml

from lightning_models.checks import ConfigError
from lightning_models.classification import ClassificationModule
from lightning_models.training.run import build, run
from lightning_models.training.run_folders import LOG_ROOT, named_run_options
from lightning_models.workflows.seeds import parse_seeds, seed_options

SKLEARN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "identity": "identity"}


class CrossValidationError(ConfigError):
    """Bad cross-validation input: printed as one line, exit status 2, nothing written."""


@dataclass
class CrossValidation:
    """What ``crossval`` returns: its folder, the summary (also ``summary.json``) and its tables (``summary.md``)."""

    folder: Path
    summary: dict[str, Any]
    table: str


def fold_options(fold: int, folds: int) -> list[str]:
    return [f"--data.init_args.fold={fold}", f"--data.init_args.folds={folds}"]


def fold_datamodule(config: str | Path, fold: int, folds: int, *options: str) -> pl.LightningDataModule:
    """Fold ``fold``'s datamodule, set up for fit: ``datamodule.splits`` holds its train, val and test tensors."""
    datamodule = build(config, *options, *fold_options(fold, folds)).datamodule
    datamodule.setup("fit")
    return datamodule


def why_it_cannot_fold(datamodule: pl.LightningDataModule) -> str | None:
    """None for a datamodule that takes ``fold`` and ``folds``; else one sentence saying why not."""
    kind = type(datamodule)
    if getattr(kind, "why_no_folds", None):
        return f"{kind.__name__} cannot fold: {kind.why_no_folds}"
    if not {"fold", "folds"} <= set(inspect.signature(kind.__init__).parameters):
        return f"{kind.__name__} has no fold argument"
    return None


def prepare(config: str, options: Sequence[str], folds: int, seeds: Sequence[int] | None, name: str) -> dict[str, Any]:
    """Check everything and return the settings (crossval.yaml), before anything is written."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise CrossValidationError(f"--folds {folds!r}: expected an integer of at least 2")
    parts = build(config, *options)
    folder = Path(LOG_ROOT, parts.config.experiment_name, name)  # the experiment's folder, as its runs' version_N
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
    """scikit-learn's LogisticRegression and MLPClassifier on each fold's own training tensors (the ones the net
    trains on), scored on its validation and test tensors; for classification datamodules that hold their splits in
    memory (``datamodule.splits``). Building every fold's datamodule here also checks, before
    any run starts, that every fold can be built."""
    scores: dict[str, list[dict[str, float]]] = {}
    for fold in range(settings["folds"]):
        datamodule = fold_datamodule(settings["config"], fold, settings["folds"], *settings["extra"])
        if not (settings["classification"] and getattr(datamodule, "splits", None)):  # none in memory: too big for these
            continue
        arrays = {split: (inputs.flatten(1).float().numpy(), targets.numpy()) for split, (inputs, targets) in datamodule.splits.items()}
        for model_name, model in baseline_models(settings).items():
            model.fit(*arrays["train"])
            scores.setdefault(model_name, []).append({f"{split}/acc": float(model.score(*arrays[split])) for split in ("val", "test")})
    return scores


def baseline_models(settings: dict[str, Any]) -> dict[str, Any]:
    """Both on standardised inputs; the MLP takes the config's hidden sizes and activation when its net is our MLP
    with hidden layers, else scikit-learn's defaults."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    net = settings["net"] or {}
    mlp = {}
    if str(net.get("class_path", "")).endswith("nets.MLP") and net.get("init_args", {}).get("hidden_sizes"):
        mlp = {"hidden_layer_sizes": tuple(net["init_args"]["hidden_sizes"])}
        if (activation := SKLEARN_ACTIVATIONS.get(net["init_args"].get("activation"))) is not None:
            mlp["activation"] = activation
    seed = settings["seeds"][0]
    return {"LogisticRegression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            "MLPClassifier": make_pipeline(StandardScaler(), MLPClassifier(**mlp, max_iter=2000, random_state=seed))}


def fold_arguments(settings: dict[str, Any], fold: int, seed: int, folder: Path) -> list[str]:
    """The config, the options for every fold, then this fold's data, seed and run folder (later options win)."""
    return [settings["config"], *settings["extra"], *fold_options(fold, settings["folds"]), *seed_options(seed),
            *named_run_options(folder, {"fold": fold, "seed": seed})]


def run_fold(settings: dict[str, Any], fold: int, seed: int) -> dict[str, Any]:
    """One fold and seed: its metrics.json when it exists (finished earlier), else an ordinary run(), resumed
    from the fold's last.ckpt when a killed run left one. Prints one line when it ends."""
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
        args = fold_arguments(settings, fold, seed, folder) + ([f"--ckpt_path={resume.resolve()}"] if note else [])
        with contextlib.redirect_stdout(io.StringIO()):  # run()'s own summary: the line below says it for the fold
            record = run(*args).record
    metrics = ", ".join(f"{key}={value:.4g}" for stage in ("val", "test") for key, value in sorted(record[stage].items()))
    print(f"fold {fold} ({fold + 1} of {settings['folds']}), seed {seed}{note}: {metrics} ({folder})", flush=True)
    return {"fold": fold, "seed": seed, "folder": str(folder), "val": record["val"], "test": record["test"]}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_and_std(rows: list[dict[str, float]]) -> dict[str, Any]:
    """``{"mean": {key: ...}, "std": {key: ...}, "n": count}`` over rows of the same keys (sample std, n - 1)."""
    stats = {key: mean_std([row[key] for row in rows]) for key in rows[0]}
    return {"mean": {key: value[0] for key, value in stats.items()}, "std": {key: value[1] for key, value in stats.items()},
            "n": len(rows)}


def summarize(settings: dict[str, Any], runs: list[dict[str, Any]], scores: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """summary.json: the settings, every run's metrics, their mean and std, and the baselines' scores per fold."""
    summary = {key: value for key, value in settings.items() if key not in ("classification", "net")}
    summary.update(runs=runs, **mean_and_std([{**dict(sorted(r["val"].items())), **dict(sorted(r["test"].items()))} for r in runs]))
    summary["baselines"] = {name: {"folds": folds, **mean_and_std(folds)} for name, folds in scores.items()}
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """summary.md: the folds' metrics with mean ± std, then the baselines beside the net on the same folds."""
    keys = list(summary["mean"])
    options = " ".join(summary["extra"]) or "none"
    lines = [f"# Cross-validation {summary['experiment']}/{Path(summary['folder']).name}", "",
             f"`{summary['config']}`, {summary['folds']} folds of the non-test rows (fold k validates, the others train), "
             f"seeds {summary['seeds']}, options: `{options}`. Each row is one run: the validation and test metrics of its "
             "best checkpoint (every fold has the same test set). Mean ± sample standard deviation (n - 1) over the n rows.", "",
             "| fold | seed | " + " | ".join(keys) + " | run folder |", "|" + " --- |" * (len(keys) + 3)]
    for r in summary["runs"]:
        lines.append(f"| {r['fold']} | {r['seed']} | " + " | ".join(f"{r[key.split('/')[0]][key]:.4f}" for key in keys)
                     + f" | {r['folder']} |")
    lines.append(f"| mean ± std (n={summary['n']}) | | "
                 + " | ".join(f"{summary['mean'][k]:.4f} ± {summary['std'][k]:.4f}" for k in keys) + " | |")
    if summary["baselines"]:
        lines += baseline_table(summary)
    return "\n".join(lines) + "\n"


def baseline_table(summary: dict[str, Any]) -> list[str]:
    names = ["net", *summary["baselines"]]
    per_fold = {"net": [{key: statistics.fmean(r[key.split("/")[0]][key] for r in summary["runs"] if r["fold"] == fold)
                         for key in ("val/acc", "test/acc")} for fold in range(summary["folds"])],
                **{name: baseline["folds"] for name, baseline in summary["baselines"].items()}}
    columns = [(name, key) for key in ("val/acc", "test/acc") for name in names]
    lines = ["", "## scikit-learn baselines on the same folds", "",
             "Fitted on each fold's training tensors (as the net gets them), scored on its validation and test tensors. "
             "net: the runs above (the mean over seeds per fold).", "",
             "| fold | " + " | ".join(f"{name} {key}" for name, key in columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for fold in range(summary["folds"]):
        lines.append(f"| {fold} | " + " | ".join(f"{per_fold[name][fold][key]:.4f}" for name, key in columns) + " |")
    stats = {name: mean_and_std(rows) for name, rows in per_fold.items()}
    lines.append(f"| mean ± std (n={summary['folds']}) | " + " | ".join(f"{stats[name]['mean'][key]:.4f} ± {stats[name]['std'][key]:.4f}"
                                                for name, key in columns) + " |")
    return lines


@contextlib.contextmanager
def lightning_info_hidden() -> Iterator[None]:
    """Lightning's INFO lines (seed, accelerator, checkpoint restored) hidden: the line per fold says what matters."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@lightning_info_hidden()
def crossval(config: str | Path, *options: str, folds: int = 5, seeds: Sequence[int] | None = None,
             name: str = "crossval") -> CrossValidation:
    """Cross-validate ``config`` over ``folds`` folds (once per seed in ``seeds``; default: the config's seed).

    ``options``: command-line options for every fold, as ``run`` takes them. Rerunning the same call reuses the
    folds that finished. Raises ``CrossValidationError`` (or the config's own ``ConfigError``) on bad input, before
    anything is written."""
    settings = prepare(str(config), [str(option) for option in options], folds, seeds, name)
    scores = baselines(settings)
    folder = Path(settings["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crossval.yaml").write_text(yaml.safe_dump({k: v for k, v in settings.items() if k not in ("classification", "net")},
                                                         sort_keys=False))
    runs = [run_fold(settings, fold, seed) for fold in range(folds) for seed in settings["seeds"]]
    summary = summarize(settings, runs, scores)
    table = markdown(summary)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "summary.md").write_text(table)
    print(f"summary: {folder / 'summary.md'}\nTensorBoard: tensorboard --logdir {folder} --host 127.0.0.1", flush=True)
    return CrossValidation(folder.resolve(), summary, table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the experiment config to cross-validate")
    parser.add_argument("--folds", type=int, default=5, help="folds of the non-test rows (at least 2)")
    parser.add_argument("--seeds", default=None, help="seeds such as 0-4 or 0,2,5-7: each fold trains once per seed")
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
