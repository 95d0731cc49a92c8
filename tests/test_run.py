"""``run()`` and ``build()``: a run from Python, the defaults config, and the Trainer flags on every task kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from lightning_models import build
from lightning_models.checks import ConfigError
from tests.conftest import CONFIGS, ROOT, run_train
from tests.helpers import event_tags

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
TASK_KINDS = ["iris_mlp_classifier", "iris_mlp_regressor", "iris_autoencoder"]  # the default config of each kind


def test_run_in_a_fresh_interpreter_returns_what_it_writes(tmp_path):
    script = f"""
import json, sys
from lightning_models import run
assert sys.argv == ["-c"]  # no command-line arguments at all
result = run({str(CONFIGS / "iris_mlp_classifier.yaml")!r}, "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false")
print(json.dumps({{"metrics": result.metrics, "folder": str(result.folder), "checkpoints": result.checkpoints,
                  "experiment": result.config["experiment_name"]}}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    returned = json.loads(done.stdout.strip().splitlines()[-1])
    folder = Path(returned["folder"])
    assert folder == (tmp_path / "lightning_logs" / "iris_mlp_classifier" / "version_0").resolve()
    written = json.loads((folder / "metrics.json").read_text())
    assert returned["metrics"] == {stage: written[stage] for stage in ("train", "val", "test")}
    assert returned["checkpoints"] == written["checkpoints"] and Path(written["checkpoints"]["best"]).is_file()
    assert written["metrics_from"]["test"] == written["checkpoints"]["best"]  # which checkpoint each block is from
    assert written["metrics_from"]["train"] == "the last training epoch"
    assert returned["experiment"] == "iris_mlp_classifier" and 0.5 < written["test"]["test/acc"] <= 1.0


def test_print_config_shows_every_default_a_run_gets(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--print_config"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    config = yaml.safe_load(done.stdout)
    assert config["trainer"]["logger"]["class_path"] == "pytorch_lightning.loggers.TensorBoardLogger"
    assert config["checkpoint"]["monitor"] == "val/loss" and config["checkpoint"]["filename"] == "best-epoch{epoch}-step{step}"
    assert config["last_checkpoint"]["class_path"] == "lightning_models.training.checkpoints.LastCheckpoint"
    assert config["progress_bar"]["class_path"] == "pytorch_lightning.callbacks.RichProgressBar"
    assert not (tmp_path / "lightning_logs").exists()


def test_a_default_changed_in_yaml_changes_the_run(tmp_path, monkeypatch):
    """The defaults are a config: an experiment config that sets one replaces it (no code involved)."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.yaml"
    mine.write_text("last_checkpoint: null\nprogress_bar: {class_path: pytorch_lightning.callbacks.TQDMProgressBar}\n"
                    "checkpoint: {monitor: val/acc, mode: max}\n")
    trainer = build(CONFIGS / "iris_mlp_classifier.yaml", mine).trainer
    kinds = {type(callback).__name__ for callback in trainer.callbacks}
    assert "TQDMProgressBar" in kinds and "RichProgressBar" not in kinds and "LastCheckpoint" not in kinds
    assert trainer.checkpoint_callback.monitor == "val/acc" and trainer.checkpoint_callback.mode == "max"


def test_the_run_folder_is_experiment_name_else_the_first_config_files_name(in_tmp):
    """A preset stacked after the experiment's config does not rename the run; experiment_name, set anywhere, does."""
    iris, debug = CONFIGS / "iris_mlp_classifier.yaml", CONFIGS / "presets" / "debug.yaml"
    parts = build(iris, debug)
    assert parts.config.experiment_name == "iris_mlp_classifier"
    assert Path(parts.trainer.default_root_dir).parts[-3:] == ("lightning_logs", "iris_mlp_classifier", "version_0")
    mine = in_tmp / "mine.yaml"  # the iris config without its experiment_name
    mine.write_text("".join(line for line in iris.open() if not line.startswith("experiment_name:")))
    assert build(mine, debug).config.experiment_name == "mine"
    named = in_tmp / "named.yaml"
    named.write_text("experiment_name: named\n")
    assert build(mine, named, debug).config.experiment_name == "named"
    assert build(mine, named, "--experiment_name=given").config.experiment_name == "given"


class UpdateNorms(pl.Callback):
    """The gradient norm each optimizer update stepped with (after any clipping), from torch's step post-hook:
    Lightning runs the closure, so the backward and the clipping, inside the optimizer's step."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

        trainer.optimizers[0].register_step_post_hook(record)


@pytest.mark.parametrize("experiment", TASK_KINDS)
def test_gradient_clip_val_clips_every_update(in_tmp, experiment):
    norms = {}
    for clip in (None, 0.01):
        recorder = UpdateNorms()
        options = [f"--trainer.gradient_clip_val={clip}"] if clip else []
        parts = build(CONFIGS / f"{experiment}.yaml", "--trainer.max_epochs=2", "--trainer.logger=false", *options, *QUIET,
                      callbacks=[recorder])
        parts.trainer.fit(parts.model, datamodule=parts.datamodule)
        updates = parts.trainer.global_step * parts.model.hparams.updates_per_step
        assert len(recorder.norms) == updates > 2  # every update, also the repeated ones of a step
        norms[clip] = recorder.norms
    assert max(norms[None]) > 0.05  # unclipped gradients are larger than the clip
    assert max(norms[0.01]) == pytest.approx(0.01, rel=1e-3) and all(norm <= 0.01 * 1.001 for norm in norms[0.01])


@pytest.mark.parametrize("experiment", TASK_KINDS)
def test_two_accumulated_batches_of_8_update_like_one_batch_of_16(in_tmp, experiment):
    weights = {}
    for batch, accumulate in ((16, 1), (8, 2)):
        parts = build(CONFIGS / f"{experiment}.yaml", f"--data.init_args.batch_size={batch}",
                      f"--trainer.accumulate_grad_batches={accumulate}", "--model.init_args.updates_per_step=1",
                      "--trainer.max_steps=1", "--trainer.limit_val_batches=0", "--trainer.logger=false",
                      "--last_checkpoint=null", *QUIET)
        before = {key: value.clone() for key, value in parts.model.net.state_dict().items()}
        parts.trainer.fit(parts.model, datamodule=parts.datamodule)
        assert parts.trainer.global_step == 1
        weights[accumulate] = parts.model.net.state_dict()
    for key, value in weights[1].items():
        assert not torch.equal(value, before[key]), key  # the update happened
        torch.testing.assert_close(weights[2][key], value, rtol=1e-5, atol=1e-7)


def test_accumulation_with_repeated_updates_is_refused_in_one_line(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.accumulate_grad_batches=2"],
                     tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "accumulate_grad_batches=2 with updates_per_step=50" in done.stderr
    assert not (tmp_path / "lightning_logs").exists()


class SizesInSetup(pl.LightningDataModule):
    """A datamodule that learns its sizes only in ``setup()``: too late for the model."""

    def __init__(self) -> None:
        super().__init__()
        self.num_features, self.num_outputs = None, None


def test_a_datamodule_without_sizes_is_named_in_the_error(in_tmp):
    with pytest.raises(ConfigError, match=r"SizesInSetup\.num_features is None"):
        try:
            build(CONFIGS / "iris_mlp_classifier.yaml", "--data=tests.test_run.SizesInSetup")
        except ValueError as error:  # jsonargparse wraps what the link raised
            from lightning_models.training.errors import config_error_in

            raise config_error_in(error) or error from None


def test_validation_panels_draw_once_per_validation(in_tmp):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.max_epochs=3", *QUIET],
                     in_tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = in_tmp / "lightning_logs" / "iris_mlp_classifier" / "version_0"
    assert "val/confusion_matrix" in event_tags(folder)["images"]
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0})
    accumulator.Reload()
    steps = [event.step for event in accumulator.Images("val/confusion_matrix")]
    assert steps == [1, 2, 3]  # one per epoch's validation; the best checkpoint's re-validation draws none
    assert [event.step for event in accumulator.Images("test/confusion_matrix")] == [3]


class NetTraced(pl.Callback):
    """Whether the module's net is being traced by torch.compile when it runs (a forward hook traces with it)."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.net.register_forward_hook(lambda *_: self.seen.append(torch.compiler.is_compiling()))


@pytest.mark.slow  # torch.compile's first steps, and the first prediction after loading, wait for the compiler
def test_compile_trains_like_the_plain_net_and_its_checkpoint_loads(in_tmp):
    import shutil

    import lightning_models
    from lightning_models import run

    if not any(map(shutil.which, ("cc", "gcc", "clang"))):
        pytest.skip("torch.compile needs a C compiler (cc, gcc or clang) on PATH")
    options = [CONFIGS / "iris_mlp_classifier.yaml", "--trainer.max_epochs=2", "--trainer.logger=false",
               "--trainer.precision=32-true", *QUIET]
    traced = {False: NetTraced(), True: NetTraced()}
    plain = run(*options, callbacks=[traced[False]])
    compiled = run(*options, "--model.init_args.compile=true", callbacks=[traced[True]])
    for stage in ("train", "val", "test"):
        loss = f"{stage}/loss"
        assert compiled.metrics[stage][loss] == pytest.approx(plain.metrics[stage][loss], rel=1e-4, abs=1e-6), stage
    weights = [torch.load(result.checkpoints["best"], weights_only=False)["state_dict"] for result in (plain, compiled)]
    assert list(weights[1]) == list(weights[0]) and all(key.startswith("net.") for key in weights[1] if "_metrics" not in key)
    assert True in traced[True].seen and True not in traced[False].seen  # the compiled run's net went through dynamo
    flower = [{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5}]
    torch.compiler.reset()  # as in a fresh process: the nets compiled above share torch's cache and its recompile limit
    loaded = lightning_models.load(compiled.checkpoints["best"])
    assert loaded.module.hparams.compile is True
    seen: list[bool] = []
    loaded.module.net.register_forward_hook(lambda *_: seen.append(torch.compiler.is_compiling()))
    np.testing.assert_allclose(loaded.predict(flower).outputs, lightning_models.load(plain.checkpoints["best"]).predict(flower).outputs,
                               rtol=1e-4, atol=1e-6)
    assert seen == [True]  # loaded, the net is compiled again: the hook ran while dynamo traced it, and only then
