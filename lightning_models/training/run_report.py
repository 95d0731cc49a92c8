"""What a finished run reports: its final metrics to every logger, the class balance and dropped rows it records, the
summary it prints. ``run`` (run.py) calls these."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from torchmetrics import MetricCollection

from lightning_models.training.hparams import hparams_summaries


def report_final_metrics(trainer: pl.Trainer, hparams: dict[str, Any], own: set[str], metrics: dict[str, dict[str, float]]) -> None:
    """Every logger gets the final metrics as ``final_val/*`` and ``final_test/*`` at the last global step, apart from the
    curves of ``val/*``; TensorBoard's HParams tab pairs them with the hyperparameters, ``own`` (the config's) before the
    machine stamp. Test first and metrics before losses: the HParams table shows its first five metrics as columns."""
    final = {f"final_{stage}/{key.split('/', 1)[-1]}": value for stage in ("test", "val")
             for key, value in sorted(metrics.get(stage, {}).items(), key=lambda item: item[0].endswith("/loss"))}
    for logger in trainer.loggers:
        if final:
            logger.log_metrics(final, step=trainer.global_step)
        if final and isinstance(logger, TensorBoardLogger):
            for summary in hparams_summaries(hparams, final, own):
                logger.experiment.file_writer.add_summary(summary, trainer.global_step)
        logger.finalize("success")  # close the files now, not at interpreter exit


def flat_stamp(stamp: dict[str, Any]) -> dict[str, Any]:
    """What ran the run, as HParams columns: ``precision``, ``machine/cpu``, ``code/commit``..."""
    return {"precision": stamp["precision"], **{f"{group}/{key}": value for group in ("machine", "code")
                                                for key, value in (stamp[group] or {}).items()}}


def metric_labels(model: pl.LightningModule) -> dict[str, str]:
    """What a metric's key leaves unsaid, by its key without the stage: ``{"f1": "macro F1"}`` for a torchmetrics score
    averaged over the classes (the key stays ``f1``: sweeps and compare read it)."""
    labels = {}
    for stage in ("val", "test"):
        collection = getattr(model, f"{stage}_metrics", None)
        if not isinstance(collection, MetricCollection):
            continue
        for name, metric in collection.items(keep_base=True):
            average = getattr(metric, "average", None)
            if average in ("macro", "weighted"):
                kind = type(metric).__name__.removeprefix("Multiclass").removeprefix("Multilabel").removesuffix("Score")
                labels[name] = f"{average} {kind}"
    return labels


def never_predicted(classes: dict[str, Any] | None) -> list[str]:
    """The classes that have validation rows but that the model predicted for none of them."""
    if not classes or "val" not in classes["predicted"] or "val" not in classes["rows"]:
        return []
    return [name for name, rows, guessed in zip(classes["names"], classes["rows"]["val"], classes["predicted"]["val"])
            if rows and not guessed]


def class_lines(classes: dict[str, Any]) -> list[str]:
    """The rows of each class per split, what the model predicted, and the majority-class baseline, a line each."""
    splits = [split for split in ("train", "val", "test") if split in classes["rows"]]
    guessed = [split for split in ("val", "test") if split in classes["predicted"]]
    per_class = ", ".join(f"{name} {'/'.join(str(classes['rows'][split][index]) for split in splits)}"
                          for index, name in enumerate(classes["names"]))
    lines = [f"class rows {'/'.join(splits)}: {per_class}"]
    if guessed:
        lines.append(f"predicted {'/'.join(guessed)}: " + ", ".join(
            f"{name} {'/'.join(str(classes['predicted'][split][index]) for split in guessed)}"
            for index, name in enumerate(classes["names"])))
    baseline = ", ".join(f"{split} {value:.4g}" for split, value in classes["majority_baseline_acc"].items())
    lines.append(f"majority-class baseline acc (always {classes['majority_class']}, the training rows' majority): {baseline}")
    return lines


def print_summary(experiment: str, folder: Path, metrics: dict[str, dict[str, float]], trainer: pl.Trainer,
                  record: dict[str, Any], labels: dict[str, str]) -> None:
    """The run's last lines: its metrics (``f1`` labelled as the macro F1 it is), the class balance, dropped rows, where
    it ran and where its files are; a one-line warning on stderr for each class never predicted on the validation rows."""
    def shown(key: str) -> str:
        label = labels.get(key.split("/", 1)[-1])
        return f"{key} ({label})" if label else key

    summary = ", ".join(f"{shown(key)}={value:.4g}" for stage in ("test", "val") for key, value in sorted(metrics.get(stage, {}).items()))
    lines = [f"\n{experiment}: {summary or 'no validation or test metrics logged'}"]
    if record.get("classes"):
        lines += class_lines(record["classes"])
    dropped = record.get("dropped_rows") or {}
    if any(dropped.values()):
        lines.append("rows dropped for a missing value: " + ", ".join(f"{split} {count}" for split, count in dropped.items()))
    machine = record["machine"]["gpu"] or record["machine"]["cpu"]
    lines += [f"precision: {record['precision']} on {machine}", f"run directory: {folder}", f"metrics: {folder / 'metrics.json'}"]
    if any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers):
        lines.append(f"TensorBoard: tensorboard --logdir {folder} --host 127.0.0.1")
    print("\n".join(lines))
    if missing := never_predicted(record.get("classes")):
        rows = sum(record["classes"]["rows"]["val"])
        print(f"warning: on the {rows} validation rows the model never predicted {', '.join(missing)}; compare its accuracy "
              "with the majority-class baseline above", file=sys.stderr)
