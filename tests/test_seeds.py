"""One meaning of "seed": a run's seed moves init, batch order and augmentation, never the split; a sweep's seeds
and lab/reproduce.py's seeds are the same runs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml

from datamodules import IrisDataModule
from datamodules.tensor import order_seed
from lightning_models.workflows.seeds import datamodule_seed, seed_options
from tests.conftest import CONFIGS, ROOT
from tests.helpers import IRIS, LR, run_script, write_space


class FirstBatch(pl.Callback):
    """Writes the targets of the first training batch and the test rows' inputs into the run folder."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.current_epoch == 0 and batch_idx == 0 and not trainer.fast_dev_run:  # not the sweep's check run
            test_inputs = trainer.datamodule.splits["test"][0]
            Path(trainer.log_dir, "first_batch.json").write_text(json.dumps(
                {"targets": batch[1].tolist(), "test_rows": test_inputs.sum(dim=1).tolist()}))


def train_order(run_seed: str | None, monkeypatch: pytest.MonkeyPatch, attached: bool = True) -> list[int]:
    """The first epoch's training targets of a mini-batch iris datamodule at Lightning's ``PL_GLOBAL_SEED``."""
    if run_seed is None:
        monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    else:
        monkeypatch.setenv("PL_GLOBAL_SEED", run_seed)
    datamodule = IrisDataModule(partition="stratified", batch_size=8)
    datamodule.setup("fit")
    if attached:  # trainer_state asks the trainer for the epoch and ranks; order_seed only whether there is one
        datamodule.trainer = SimpleNamespace(current_epoch=0, global_rank=0, world_size=1, overfit_batches=0,
                                             strategy=SimpleNamespace(root_device=torch.device("cpu")))
    return [int(target) for _, targets in datamodule.train_dataloader() for target in targets]


def test_the_run_seed_moves_the_batch_order_and_seed_zero_keeps_todays(monkeypatch):
    seed_0, seed_1, unset = (train_order(seed, monkeypatch) for seed in ("0", "1", None))
    assert seed_0 != seed_1 and sorted(seed_0) == sorted(seed_1)  # the same rows, another order
    assert seed_0 == unset == train_order("1", monkeypatch, attached=False)  # no trainer: the datamodule's seed alone
    datamodule = IrisDataModule(seed=5)
    datamodule.trainer = object()
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    assert order_seed(datamodule) == 8


def test_seed_options_are_the_run_seed_and_move_the_split_only_when_asked():
    assert seed_options(3) == ["--seed_everything=3"]
    assert seed_options(3, CONFIGS / "xor_mlp.yaml", vary_split=True) == ["--seed_everything=3", "--data.init_args.seed=45"]
    assert datamodule_seed(CONFIGS / "iris_mlp_classifier.yaml") == 0  # its own seed: 0
    assert datamodule_seed(CONFIGS / "exp_fit.yaml") == 0  # no seed in the file: the class default, as build resolves it
    for bad in (-1, True, "2"):
        with pytest.raises(ValueError, match="expected an integer >= 0"):
            seed_options(bad)


@pytest.mark.slow
def test_a_sweeps_seeds_are_reproduces_seeds(tmp_path):
    """One configuration with mini-batches, seeds 0-2: the sweep's runs draw different batch orders on the same test
    rows, and lab/reproduce.py's runs of the same seeds give the same metrics."""
    config = yaml.safe_load(Path(IRIS).read_text())
    config["data"]["init_args"].update(batch_size=16, partition="stratified")
    config["trainer"]["max_epochs"] = 2
    config["model"]["init_args"]["updates_per_step"] = 1
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    registry = {"tiny": {"what": "iris in batches of 16", "group": "tiny", "default_keys": ["test/acc", "test/loss", "val/loss"],
                         "config": "tiny.yaml"}}
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(registry))
    space = write_space(tmp_path, {"parameters": {LR: {"type": "categorical", "choices": [0.003]}}})  # the config's own lr
    record = {"class_path": "tests.test_seeds.FirstBatch"}
    done = run_script(ROOT / "scripts" / "sweep.py", "--config", "tiny.yaml", "--space", space, "--trials", "1", "--seeds", "0-2",
                      "--pruner", "none", "--", "--trainer.accelerator=cpu", f"--trainer.callbacks+={json.dumps(record)}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [tmp_path / "lightning_logs" / "iris_mlp_classifier" / "sweep" / f"trial_0_seed_{seed}" for seed in range(3)]
    first = [json.loads((run / "first_batch.json").read_text()) for run in runs]
    assert len({json.dumps(batch["targets"]) for batch in first}) == 3  # three seeds, three batch orders
    assert first[0]["test_rows"] == first[1]["test_rows"] == first[2]["test_rows"]  # one split

    done = run_script(ROOT / "lab" / "reproduce.py", "--registry", "registry.yaml", "--only", "tiny", "--seeds", "0-2",
                      "--accelerator", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "lightning_logs" / "reproduce" / "RESULTS.json").read_text())
    per_seed = report["experiments"][0]["default"]["per_seed"]
    for key in registry["tiny"]["default_keys"]:
        swept = [json.loads((run / "metrics.json").read_text())[key.split("/")[0]][key] for run in runs]
        assert per_seed[key] == swept, key
