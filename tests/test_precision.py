"""The fast CPU path: channels-last convolutions and bf16-mixed precision, checked against 32-bit."""

from __future__ import annotations

import warnings

import pytest
import torch

from lightning_models.machine import cpu_has_native_bf16
from lightning_models.nets import FashionCNN
from tests.conftest import CONFIGS, build_from_config
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
    model, datamodule, trainer = build_from_config(
        CONFIGS / "fashion_cnn.yaml", f"--data.data_dir={tmp_path / 'tiny'}", "--data.download=false",
        "--data.val_size=16", "--data.batch_size=16", "--trainer.max_epochs=2", "--trainer.precision=bf16-mixed",
        "--trainer.callbacks=[]", *QUIET,
    )
    dtypes: list[torch.dtype] = []
    model.net.classifier[-1].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype) if module.training else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
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
