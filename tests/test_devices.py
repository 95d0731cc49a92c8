"""One device unless asked: the defaults on a faked multi-GPU host, the one-line refusal of in-process runs on several
devices, a GPU per sweep worker, and what a run records of its machine (tests/conftest.py's ``fake_machine``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy

from lightning_models import build, run
from lightning_models.checks import ConfigError
from lightning_models.machine import describe, machine_record
from lightning_models.workflows.sweep_workers import visible_gpus, worker_gpus
from tests.conftest import CONFIGS, ROOT, fake_machine
from tests.helpers import IRIS, write_space

QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


class RecordVisibleDevices(pl.Callback):
    """Writes ``folder/<pid>``: the ``CUDA_VISIBLE_DEVICES`` of the process that trains a trial (not the sweep's
    fast_dev_run check)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        os.makedirs(self.folder, exist_ok=True)
        Path(self.folder, str(os.getpid())).write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))


def test_the_defaults_train_on_one_gpu_of_a_faked_two_gpu_host(monkeypatch):
    fake_machine(monkeypatch, {"avx2"}, "A100", count=2)
    for config, precision in (("fashion_cnn", "bf16-mixed"), ("iris_mlp_classifier", "32-true")):
        trainer = build(CONFIGS / f"{config}.yaml", *QUIET).trainer
        assert isinstance(trainer.strategy, SingleDeviceStrategy), config
        assert (trainer.num_devices, trainer.world_size, trainer.strategy.root_device) == (1, 1, torch.device("cuda", 0))
        assert trainer.precision == precision  # fashion says auto: native bf16 on an A100; iris leaves 32-bit


def test_an_in_process_run_asked_for_two_devices_refuses_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:  # a real two-process DDP request on this CPU
        run(CONFIGS / "iris_mlp_classifier.yaml", "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("trainer: 2 devices (devices=2, num_nodes=1, world size 2)")
    assert "scripts/train.py fit" in message and message.endswith("use --trainer.devices=1.")
    assert not (tmp_path / "lightning_logs").exists()  # refused before anything was written
    fake_machine(monkeypatch, {"avx2"}, "A100", count=2)
    with pytest.raises(ConfigError, match=r"^trainer: 2 devices .*a run started from Python"):
        build(CONFIGS / "fashion_cnn.yaml", "--trainer.devices=-1")  # every GPU
    with pytest.raises(ConfigError, match="scripts/train.py test evaluates every row on every device"):
        build(CONFIGS / "fashion_cnn.yaml", "--trainer.devices=2", stage="test")
    allowed = build(CONFIGS / "fashion_cnn.yaml", "--trainer.devices=2", *QUIET, several_devices=True).trainer
    assert isinstance(allowed.strategy, DDPStrategy) and allowed.num_devices == allowed.world_size == 2


@pytest.mark.parametrize("workflow", ["sweep", "crossval"])
def test_sweeps_and_crossval_asked_for_two_devices_refuse_in_one_line(tmp_path, monkeypatch, capsys, workflow):
    from lightning_models.workflows import crossval, sweep

    monkeypatch.chdir(tmp_path)
    options = ["--", "--trainer.accelerator=cpu", "--trainer.devices=2"]
    if workflow == "sweep":
        status = sweep.main(["--config", IRIS, "--space", write_space(tmp_path), "--trials", "2", *options])
    else:
        status = crossval.main(["--config", IRIS, "--folds", "2", *options])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1 and error[0].startswith("error: trainer: 2 devices"), error
    assert not (tmp_path / "lightning_logs").exists()


def test_sweep_workers_get_a_gpu_each_while_there_are_enough(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake_machine(monkeypatch, {"avx2"}, "A100", count=2)
    assert visible_gpus() == ["0", "1"]
    assert worker_gpus(2, 1, ["0", "1"]) == ["0", "1"]
    assert worker_gpus(3, 1, ["0", "1"]) == ["0", "1", "0"]  # more workers than GPUs: they share, in turn
    assert worker_gpus(2, 0, ["0", "1"]) == [None, None]  # --gpus-per-worker 0: every worker sees all
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # a job's own GPUs (SLURM), named as CUDA names them
    assert visible_gpus() == ["5", "7"] and worker_gpus(2, 1, visible_gpus()) == ["5", "7"]
    fake_machine(monkeypatch, {"avx2"})
    assert visible_gpus() == [] and worker_gpus(2, 1, []) == [None, None]  # a CPU machine: nothing set


def test_gpus_per_worker_beyond_one_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from lightning_models.workflows.sweep import main

    monkeypatch.chdir(tmp_path)
    status = main(["--config", IRIS, "--space", write_space(tmp_path), "--workers", "2", "--gpus-per-worker", "2"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1 and error[0].startswith("error: --gpus-per-worker 2: a trial trains on one"), error


@pytest.mark.slow
def test_two_sweep_workers_on_a_faked_two_gpu_host_train_each_on_its_own(tmp_path, monkeypatch, capsys):
    """The parent counts two (faked) GPUs; its two workers are real processes, which train on this CPU with the
    CUDA_VISIBLE_DEVICES the parent gave them. Only the count is faked: the parent's own check run trains too, on
    the CPU, which a faked ``is_available`` would send to CUDA."""
    from lightning_models.workflows.sweep import main

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers load this file's callback
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # torch's own reads the count under NVML
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    seen = tmp_path / "seen"
    record = {"class_path": "tests.test_devices.RecordVisibleDevices", "init_args": {"folder": str(seen)}}
    status = main(["--config", IRIS, "--space", write_space(tmp_path), "--trials", "2", "--workers", "2", "--pruner", "none",
                   "--", "--trainer.accelerator=cpu", "--trainer.max_epochs=3", f"--trainer.callbacks+={json.dumps(record)}"])
    out = capsys.readouterr().out
    assert status == 0, out[-2000:]
    assert "worker 0: CUDA_VISIBLE_DEVICES=0\n" in out and "worker 1: CUDA_VISIBLE_DEVICES=1\n" in out
    devices = {path.name: path.read_text() for path in seen.iterdir()}  # pid -> what it saw
    assert sorted(devices.values()) == ["0", "1"] and str(os.getpid()) not in devices, devices


def test_a_gpu_run_records_its_gpu_and_a_cpu_run_names_none(monkeypatch):
    fake_machine(monkeypatch, {"avx2"}, "T4", count=2)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    trainer = build(IRIS, *QUIET).trainer
    record = machine_record(trainer.strategy.root_device, trainer)
    assert record == {"cpu": "Fake CPU", "cpu_native_bf16": False, "threads": torch.get_num_threads(), "gpu": "Tesla T4",
                      "gpu_capability": "7.5", "cuda": torch.version.cuda, "cudnn": 90100, "gpus_visible": 2,
                      "cudnn_benchmark": bool(torch.backends.cudnn.benchmark), "world_size": 1,
                      "float32_matmul_precision": torch.get_float32_matmul_precision()}
    ddp = build(IRIS, "--trainer.devices=2", *QUIET, several_devices=True).trainer
    assert machine_record(ddp.strategy.root_device, ddp)["world_size"] == 2
    cpu = build(IRIS, "--trainer.accelerator=cpu", *QUIET).trainer  # the GPU is there, the run does not use it
    on_cpu = machine_record(cpu.strategy.root_device, cpu)
    assert [on_cpu[key] for key in ("gpu", "gpu_capability", "cuda", "cudnn", "gpus_visible")] == [None] * 5
    assert "Tesla T4 (compute capability 7.5; native bfloat16: no), 2 visible" in describe()
    assert describe().endswith("precision auto -> 16-mixed")


def test_float32_matmul_precision_is_a_trainer_option_and_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = torch.get_float32_matmul_precision()
    try:
        result = run(IRIS, "--trainer.float32_matmul_precision=high", "--trainer.max_epochs=1", "--trainer.accelerator=cpu",
                     "--trainer.enable_progress_bar=false")
        assert torch.get_float32_matmul_precision() == "high"
        assert result.record["machine"]["float32_matmul_precision"] == "high"
        assert result.config["trainer"]["float32_matmul_precision"] == "high"  # config.yaml repeats it
    finally:
        torch.set_float32_matmul_precision(before)
    with pytest.raises(ConfigError, match=r"'highest', 'high', 'medium'\]. Got value: fast"):
        build(IRIS, "--trainer.float32_matmul_precision=fast")
