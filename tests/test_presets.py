"""The presets of configs/presets/, stacked as a second --config: each one's effect on a real (tiny, iris) run."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml

from lightning_models import run
from lightning_models.base import NonFiniteLossError
from lightning_models.training.cli import TemplateCLI
from lightning_models.training.experiments import load_registry
from tests.conftest import CONFIGS
from tests.helpers import write_idx

IRIS = CONFIGS / "iris_mlp_classifier.yaml"
FASHION = CONFIGS / "fashion_cnn.yaml"
PRESETS = CONFIGS / "presets"
QUIET = ("--trainer.callbacks=[]", "--progress_bar=null", "--last_checkpoint=null")  # no panels to draw: faster


class ParseOnly(TemplateCLI):
    """Parses the arguments and builds nothing."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


class BatchCounter(pl.Callback):
    """Counts the batches run, by trainer function and loop: ``{"fit/train": 1, "fit/val": 1, ...}``."""

    def __init__(self) -> None:
        self.batches: Counter[str] = Counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.batches[f"{trainer.state.fn.value}/train"] += 1

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.batches[f"{trainer.state.fn.value}/val"] += 1

    def on_test_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.batches[f"{trainer.state.fn.value}/test"] += 1


def test_every_preset_stacks_on_every_experiment_config() -> None:
    """A preset holds only keys every config accepts: every experiment's config parses with the presets stacked on it
    (all at once: they set different keys), and the resolved trainer settings are the presets'."""
    presets = {path: yaml.safe_load(path.read_text())["trainer"] for path in sorted(PRESETS.glob("*.yaml"))}
    assert len(presets) == 4
    parser = ParseOnly(["--config", str(IRIS)]).parser
    for experiment in load_registry():
        stacked = [word for path in (experiment.default_config, *presets) for word in ("--config", str(path))]
        resolved = parser.parse_args(stacked).as_dict()["trainer"]
        for preset, settings in presets.items():
            for key, value in settings.items():
                assert resolved[key] == value or resolved[key]["class_path"] == value["class_path"], (experiment.name, preset, key)


def test_debug_runs_exactly_one_batch(in_tmp: Path) -> None:
    """fast_dev_run: one training step on one batch (of 8 rows, from epochs of 8 batches), one validation batch."""
    counter = BatchCounter()
    result = run(IRIS, PRESETS / "debug.yaml", "--data.init_args.batch_size=8", callbacks=[counter])
    assert result.record["global_step"] == 1
    # run() validates and tests after fit: one batch each too
    assert counter.batches == {"fit/train": 1, "fit/val": 1, "validate/val": 1, "test/test": 1}
    # fast_dev_run drops the logger (and Lightning saves no config.yaml): metrics.json still goes to a run folder
    assert result.folder.resolve() == (in_tmp / "lightning_logs" / "iris_mlp_classifier" / "version_0").resolve()
    assert (result.folder / "metrics.json").is_file()
    assert sorted(path.name for path in in_tmp.iterdir()) == ["lightning_logs"]


def test_overfit_drives_the_training_loss_near_zero(in_tmp: Path) -> None:
    """overfit_batches: the same 4 batches of 8 rows every epoch, 20 epochs here (x 50 updates a step). The bound:
    0.01 is a mean probability of 0.99 for each row's true class, several times below the training loss the default
    run ends with on all rows (a model that generalises) and far below chance (ln 3 = 1.10): reachable only by
    fitting these 32 rows."""
    result = run(IRIS, PRESETS / "overfit.yaml", "--data.init_args.batch_size=8", "--trainer.max_epochs=20", *QUIET)
    assert result.record["global_step"] == 20 * 4
    assert result.metrics["train"]["train/loss"] < 0.01


class BatchRecorder(pl.Callback):
    """Each training batch's inputs by epoch, and whether any dropout module was training for it."""

    def __init__(self) -> None:
        self.inputs: dict[int, list[torch.Tensor]] = {}
        self.dropout_training: set[bool] = set()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self.inputs.setdefault(trainer.current_epoch, []).append(batch[0].detach().clone())
        self.dropout_training |= {m.training for m in pl_module.modules() if isinstance(m, torch.nn.Dropout)}


def test_overfit_repeats_the_first_batches_unaugmented_with_dropout_off(in_tmp: Path) -> None:
    """fashion_cnn.yaml augments and its FashionCNN has dropout: under the preset each epoch gets the same first
    batches, in order and without augmentation (the stored images themselves), and dropout is in eval mode."""
    from datamodules import FashionMNISTDataModule

    write_idx(in_tmp / "tiny", train=96)
    data = ["--data.init_args.data_dir=tiny", "--data.init_args.batch_size=8", "--data.init_args.val_size=16"]
    recorder = BatchRecorder()
    run(FASHION, PRESETS / "overfit.yaml", *data, "--trainer.max_epochs=3", "--trainer.overfit_batches=2", *QUIET,
        callbacks=[recorder])
    stored = FashionMNISTDataModule(data_dir="tiny", batch_size=8, val_size=16)
    stored.setup("fit")
    images = stored.splits["train"][0][:16]
    expected = stored.to_inputs(images)
    for epoch in range(3):
        assert len(recorder.inputs[epoch]) == 2
        assert torch.equal(torch.cat(recorder.inputs[epoch]), expected)
    assert recorder.dropout_training == {False}
    recorder = BatchRecorder()  # the same run without the preset: shuffled, augmented, dropout training
    run(FASHION, *data, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", *QUIET, callbacks=[recorder])
    assert not torch.equal(torch.cat(recorder.inputs[0]), expected) and recorder.dropout_training == {True}


def test_profile_writes_its_report_into_the_run_folder(in_tmp: Path) -> None:
    result = run(IRIS, PRESETS / "profile.yaml", "--trainer.max_epochs=2", *QUIET)
    report = result.folder / "fit-profile.txt"
    assert report.is_file(), sorted(path.name for path in result.folder.iterdir())
    assert re.search(r"\.training_step\s*\|\s*\d", report.read_text())  # a row for training_step, its mean time next


NAN_GRADIENT_NET = '''
import torch


class NaNGradientNet(torch.nn.Module):
    """Finite outputs whose gradient is NaN: the square root of 0 has an infinite derivative, times the 0 it came from."""

    def __init__(self, in_features: int, out_features: int, hidden_sizes: list = (), activation: str = "relu") -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = self.linear(inputs)
        return outputs + torch.sqrt(outputs * 0)
'''


def test_anomaly_names_the_backward_operation_that_made_nan(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the preset the NaN gradient surfaces a step later as a NaN loss blamed on the lr; with it, the
    first backward stops at the operation that returned NaN (the multiplication by 0)."""
    (in_tmp / "nan_net.py").write_text(NAN_GRADIENT_NET)
    monkeypatch.syspath_prepend(str(in_tmp))
    net = "--model.init_args.net=" + json.dumps({"class_path": "nan_net.NaNGradientNet"})
    with pytest.raises(NonFiniteLossError):
        run(IRIS, net, "--trainer.max_epochs=1", *QUIET)
    with pytest.raises(RuntimeError, match="MulBackward0.* returned nan"):
        run(IRIS, PRESETS / "anomaly.yaml", net, "--trainer.max_epochs=1", *QUIET)
