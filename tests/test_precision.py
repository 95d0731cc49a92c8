"""The fast CPU path: channels-last convolutions and bf16-mixed precision, checked against 32-bit; ``precision: auto``."""

from __future__ import annotations

import json
import os
import subprocess
import warnings

import pytest
import torch
import yaml

from lightning_models import build, machine, run
from lightning_models.machine import cpu_has_native_bf16
from lightning_models.nets import FashionCNN
from lightning_models.training.trainer import Trainer
from tests.conftest import CONFIGS, GPUS, ROOT, build_from_config, fake_machine
from tests.helpers import write_idx

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false",
         "--last_checkpoint=null", "--trainer.accelerator=cpu"]


def test_channels_last_cnn_computes_what_the_default_layout_computes():
    torch.manual_seed(0)
    plain = FashionCNN(channels_last=False).eval()
    fast = FashionCNN(channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())  # copied into channels-last parameters: the layout stays
    conv = fast.features[4].weight  # 32 -> 64 channels (with 1 channel both layouts coincide)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    images = torch.randn(8, 1, 28, 28)
    torch.testing.assert_close(fast(images), plain(images), atol=1e-5, rtol=1e-4)
    for net in (plain, fast):
        net.zero_grad()
        net(images).square().sum().backward()
    torch.testing.assert_close(fast.features[4].weight.grad, plain.features[4].weight.grad, atol=1e-4, rtol=1e-3)


def test_bf16_mixed_on_cpu_runs_the_net_in_bfloat16_and_steps_the_one_cycle_schedule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_idx(tmp_path / "tiny", train=96, test=32)
    dtypes: list[torch.dtype] = []
    with warnings.catch_warnings(record=True) as caught:  # the Trainer warns when it is built
        warnings.simplefilter("always")
        model, datamodule, trainer = build_from_config(
            CONFIGS / "fashion_cnn.yaml", f"--data.data_dir={tmp_path / 'tiny'}", "--data.download=false",
            "--data.val_size=16", "--data.batch_size=16", "--trainer.max_epochs=2", "--trainer.precision=bf16-mixed",
            "--trainer.callbacks=[]", *QUIET,
        )
        model.net.classifier[-1].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype) if module.training else None)
        trainer.fit(model, datamodule=datamodule)
    steps = 2 * (96 - 16) // 16
    assert trainer.global_step == steps and len(dtypes) == steps
    assert set(dtypes) == {torch.bfloat16}  # autocast reached the net in every training step
    emulated = [w for w in caught if "bfloat16 is emulated" in str(w.message)]
    assert bool(emulated) != cpu_has_native_bf16()  # warned exactly where bf16 is slow
    # the scheduler advanced once per update, as in 32-bit: rebuild it and step it as often
    reference = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=0.004)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.004, total_steps=steps)
    for _ in range(steps):
        reference.step()
        schedule.step()
    assert model.optimizers().optimizer.param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed: the weights stay 32-bit


def test_bf16_mixed_reaches_the_accuracy_of_32_bit_on_iris(tmp_path, monkeypatch):
    """Same config, same seed, same schedule (50 updates per step; under bf16 each goes through Lightning's closure)."""
    monkeypatch.chdir(tmp_path)
    accuracy = {}
    for precision in ("32-true", "bf16-mixed"):
        model, datamodule, trainer = build_from_config(CONFIGS / "iris_mlp_classifier.yaml",
                                                       f"--trainer.precision={precision}", *QUIET)
        trainer.fit(model, datamodule=datamodule)
        accuracy[precision] = trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/acc"]
    assert accuracy["32-true"] >= 0.9
    assert abs(accuracy["bf16-mixed"] - accuracy["32-true"]) <= 0.04, accuracy


@pytest.mark.parametrize(("gpu", "emulated", "native", "expected"), [
    ("A100", True, True, "bf16-mixed"),   # Ampere: bfloat16 tensor cores
    ("H100", True, True, "bf16-mixed"),   # Hopper
    ("T4", True, False, "16-mixed"),      # Turing: fp16 tensor cores; bfloat16 only emulated (the old auto took it)
    ("V100", True, False, "16-mixed"),    # Volta: the same
    ("P100", True, False, "32-true"),     # Pascal: no tensor cores
    ("CPU", False, False, "32-true"),     # no CUDA: the CPU's rule (an AVX2 CPU here)
])
def test_auto_precision_on_each_gpu_kind_is_native_and_follows_torchs_bf16_check(monkeypatch, gpu, emulated, native,
                                                                                  expected):
    fake_machine(monkeypatch, {"avx2"}, gpu)
    assert torch.cuda.is_bf16_supported() == emulated  # torch's own function, its default counting emulation
    assert torch.cuda.is_bf16_supported(including_emulation=False) == native
    capability = GPUS[gpu][1] if GPUS[gpu] else None
    assert (torch.cuda.get_device_capability() if capability else None) == capability
    assert machine.auto_precision("auto") == machine.auto_precision("gpu") == expected
    assert machine.auto_precision("cpu") == "32-true"  # a GPU the run does not use


@pytest.mark.parametrize(("flags", "accelerator", "expected"), [
    ({"avx2", "avx512f", "avx512_bf16"}, "auto", "bf16-mixed"),   # Zen 4 / Cooper Lake and newer
    ({"avx2", "amx_bf16", "amx_tile"}, "auto", "bf16-mixed"),     # Sapphire Rapids: AMX only listed
    ({"avx2", "avx512f"}, "auto", "32-true"),                      # AVX-512 without its bf16 part
    ({"avx2"}, "cpu", "32-true"),
])
def test_auto_precision_on_a_cpu_is_bf16_mixed_exactly_where_bfloat16_runs_in_hardware(monkeypatch, flags, accelerator,
                                                                                       expected):
    fake_machine(monkeypatch, flags)
    assert machine.auto_precision(accelerator) == expected
    fake_machine(monkeypatch, flags, "H100")
    assert machine.auto_precision("cpu") == expected  # the CPU's rule when the run leaves the GPU alone


@pytest.mark.parametrize("initialised", [False, True])
def test_reading_the_gpu_starts_no_cuda_here_until_cuda_runs(tmp_path, monkeypatch, initialised):
    """Reading a device's properties initialises CUDA, after which Lightning cannot fork (ddp_fork, notebooks): until
    this process has started CUDA, a forked child reads them; once it has, this process does."""
    readers = tmp_path / "pids"
    fake_machine(monkeypatch, {"avx2"}, "A100", readers=readers)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: initialised)
    assert machine.auto_precision() == "bf16-mixed"
    assert machine.gpu_facts() == {"name": "NVIDIA A100-SXM4-40GB", "capability": "8.0", "native_bf16": True}
    pids = [int(line) for line in readers.read_text().split()]
    assert pids and all((pid == os.getpid()) == initialised for pid in pids), pids


@pytest.mark.parametrize("flags", [{"avx2", "avx512_bf16"}, {"avx2"}])
def test_auto_precision_is_resolved_before_the_trainer_and_recorded_in_config_metrics_and_hparams(tmp_path, monkeypatch,
                                                                                                  flags):
    monkeypatch.chdir(tmp_path)
    fake_machine(monkeypatch, flags)
    expected = "bf16-mixed" if "avx512_bf16" in flags else "32-true"
    result = run(CONFIGS / "iris_mlp_classifier.yaml", "--trainer.precision=auto", "--trainer.max_epochs=1",
                 "--model.init_args.updates_per_step=2", "--trainer.enable_progress_bar=false")
    saved = yaml.safe_load((result.folder / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == expected  # a re-run of the saved config repeats the choice
    record = json.loads((result.folder / "metrics.json").read_text())
    assert record["precision"] == expected
    assert record["machine"] == {"cpu": "Fake CPU", "cpu_native_bf16": expected == "bf16-mixed",
                                 "threads": torch.get_num_threads(), "gpu": None, "gpu_capability": None, "cuda": None,
                                 "cudnn": None, "gpus_visible": None, "cudnn_benchmark": None, "world_size": 1,
                                 "float32_matmul_precision": torch.get_float32_matmul_precision()}  # a CPU run: no GPU
    hparams = yaml.safe_load((result.folder / "hparams.yaml").read_text())
    assert hparams["precision"] == expected and hparams["machine/cpu"] == "Fake CPU"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: the commit the run's code came from
        assert record["code"]["commit"] == head.stdout.strip() == hparams["code/commit"]
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
        assert record["code"]["dirty"] == dirty


@pytest.mark.parametrize(("given", "flags"), [("32-true", {"avx512_bf16"}), ("bf16-mixed", {"avx2"}), ("64-true", {"amx_bf16"})])
def test_an_explicit_precision_is_never_overridden(monkeypatch, given, flags):
    fake_machine(monkeypatch, flags)
    parts = build(CONFIGS / "fashion_cnn.yaml", f"--trainer.precision={given}", *QUIET)
    assert parts.trainer.precision == given == parts.config.trainer.precision
    assert Trainer(precision=given, accelerator="cpu", logger=False).precision == given


@pytest.mark.parametrize("flags", [{"avx512_bf16"}, {"avx2"}])
def test_the_fashion_default_resolves_auto_and_the_small_experiments_stay_32_bit(monkeypatch, flags):
    fake_machine(monkeypatch, flags)
    expected = "bf16-mixed" if flags == {"avx512_bf16"} else "32-true"
    assert yaml.safe_load((CONFIGS / "fashion_cnn.yaml").read_text())["trainer"]["precision"] == "auto"
    assert build(CONFIGS / "fashion_cnn.yaml", *QUIET).trainer.precision == expected
    assert Trainer(precision="auto", accelerator="cpu", logger=False).precision == expected  # Python users get it too
    for name in ("iris_mlp_classifier", "xor_mlp", "exp_fit"):
        assert build(CONFIGS / f"{name}.yaml", *QUIET).trainer.precision == "32-true"


def evaluated(model: torch.nn.Module, batches, precision: str) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` over ``batches``, each batch's forward and loss under the autocast
    Lightning's ``precision`` puts around a test step (none for 32-true)."""
    correct, loss, rows = 0.0, 0.0, 0
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    with torch.no_grad():
        for inputs, targets in batches:
            with autocast:
                scores = model(inputs)
                batch_loss = torch.nn.functional.cross_entropy(scores, targets)
            correct += (scores.argmax(1) == targets).sum().item()
            loss += batch_loss.float().item() * len(targets)
            rows += len(targets)
    return correct / rows, loss / rows


@pytest.mark.parametrize(("flags", "pinned", "expected"), [
    ({"avx2", "avx512_bf16"}, [], "bf16-mixed"),                            # a CPU with native bf16: auto is bf16
    ({"avx2"}, [], "32-true"),                                             # an AVX2 one: auto is 32-bit
    ({"avx2", "avx512_bf16"}, ["--trainer.precision=32-true"], "32-true"),  # a test that pins 32-bit, on either
])
def test_image_folder_metrics_equal_an_evaluation_under_the_precision_the_run_resolved(tmp_path, monkeypatch, flags,
                                                                                      pinned, expected):
    """configs/examples/image_folder.yaml says ``precision: auto``: whatever it resolves to is what config.yaml and
    metrics.json record, and the run's test metrics are the best checkpoint's evaluated under that precision."""
    from datamodules import ImageFolderDataModule
    from lightning_models.training.checkpoints import load_module
    from tests.helpers import write_folder

    monkeypatch.chdir(tmp_path)
    fake_machine(monkeypatch, flags)
    root = write_folder(tmp_path / "images", per_class=12)
    result = run(CONFIGS / "examples" / "image_folder.yaml", f"--data.init_args.root={root}", "--data.init_args.batch_size=8",
                 "--trainer.max_epochs=1", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
                 "--trainer.enable_model_summary=false", *pinned)
    assert yaml.safe_load((result.folder / "config.yaml").read_text())["trainer"]["precision"] == expected
    record = json.loads((result.folder / "metrics.json").read_text())
    assert record["precision"] == expected and record["machine"]["cpu_native_bf16"] == ("avx512_bf16" in flags)
    datamodule = ImageFolderDataModule(str(root), image_size=28, batch_size=8)  # the config's split, unaugmented test rows
    datamodule.setup()
    model = load_module(record["checkpoints"]["best"])
    accuracy, loss = evaluated(model, datamodule.test_dataloader(), expected)
    assert record["test"]["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert record["test"]["test/loss"] == pytest.approx(loss, rel=1e-5)
    if expected == "bf16-mixed":  # a 32-bit reference would not do: the reason the tests comparing with one pin 32-true
        assert record["test"]["test/loss"] != pytest.approx(evaluated(model, datamodule.test_dataloader(), "32-true")[1],
                                                            rel=1e-5)
