"""Randomness per rank, the same on rerun: augmentation, fresh batches and dropout differ between DDP ranks, rank 0 draws
what a single process draws, and a killed and resumed two-rank run continues every rank's own draws."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from datamodules.images import ImageBatches
from datamodules.synthetic import FreshBatches
from tests.conftest import CONFIGS, ROOT, run_train


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class RecordDraws(pl.Callback):
    """Appends to ``folder/rank<r>.jsonl``, before every training batch: its epoch and index, a digest of the batch's
    inputs and one of the global RNG state (what dropout draws from)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        os.makedirs(self.folder, exist_ok=True)
        line = {"epoch": trainer.current_epoch, "batch": batch_idx, "inputs": digest(batch[0]),
                "rng": digest(torch.get_rng_state())}
        with open(Path(self.folder, f"rank{trainer.global_rank}.jsonl"), "a") as records:
            records.write(json.dumps(line) + "\n")


def draws(folder: Path, rank: int) -> dict[tuple[int, int], dict]:
    lines = [json.loads(line) for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()]
    return {(line["epoch"], line["batch"]): line for line in lines}


def identical_images(folder: Path, train: int = 96, test: int = 32) -> Path:
    """Fashion-MNIST IDX files whose images are all one left-right asymmetric picture: batches of them differ only by
    their augmentation. Labels i % 10. Returns the ``data_dir``."""
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    picture = (torch.arange(28 * 28) % 28 * 9).clamp(max=255).to(torch.uint8).view(28, 28)
    picture[:, 14:] = 0
    for prefix, count in (("train", train), ("t10k", test)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, count, 28, 28)
                                                          + picture.repeat(count, 1, 1).numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count)
                                                          + (torch.arange(count) % 10).to(torch.uint8).numpy().tobytes())
    return folder


def test_rank_0_augments_as_a_single_process_always_did_and_rank_1_on_its_own():
    images, labels = torch.arange(64 * 8 * 8).remainder(251).to(torch.uint8).view(64, 8, 8), torch.arange(64)
    seed, epoch = 5, 2

    def single_process_reference(rank: int, world: int) -> list[torch.Tensor]:  # one generator: order, then draws
        generator = torch.Generator().manual_seed(seed + 100_003 * epoch)
        rows = torch.randperm(64, generator=generator)[: 64 - 64 % world][rank::world]
        out = []
        for index in rows.split(16):
            batch = images[index]
            flip = torch.rand(len(index), generator=generator) < 0.5
            batch = torch.where(flip.view(-1, 1, 1), batch.flip(-1), batch)
            shifts = torch.randint(0, 5, (2, len(index)), generator=generator)
            padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
            out.append(torch.stack([padded[i, shifts[0, i]:shifts[0, i] + 8, shifts[1, i]:shifts[1, i] + 8]
                                    for i in range(len(index))]))
        return out

    def batches(rank: int, world: int) -> list[torch.Tensor]:
        made = ImageBatches(images, labels, 16, True, seed, epoch=lambda: epoch, rank=rank, world_size=world, augment=True)
        return [inputs for inputs, _ in made]

    for world in (1, 2):
        assert all(torch.equal(a, b) for a, b in zip(batches(0, world), single_process_reference(0, world), strict=True))
    ones = torch.ones(64, dtype=torch.int64)
    same_images = images[:1].repeat(64, 1, 1)  # ranks' rows differ; identical images show the draws alone
    flips = [[inputs for inputs, _ in ImageBatches(same_images, ones, 16, True, seed, epoch=lambda: epoch, rank=rank,
                                                   world_size=2, augment=True)] for rank in (0, 1, 1)]
    assert not torch.equal(torch.cat(flips[0]), torch.cat(flips[1]))  # rank 1 flips and shifts on its own
    assert torch.equal(torch.cat(flips[1]), torch.cat(flips[2]))  # the same again when run again


def test_fresh_batches_of_rank_0_are_a_single_process_s_and_rank_1_draws_its_own():
    def sample(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(count, generator=generator, device=generator.device)
        return x, x.exp()

    def drawn(rank: int, epoch: int = 3) -> torch.Tensor:
        return torch.cat([x for x, _ in FreshBatches(sample, 8, 4, 11, torch.device("cpu"), lambda: epoch, rank)])

    reference = torch.rand(32, generator=torch.Generator().manual_seed(11 + 100_003 * 3))  # the seed FreshBatches always had
    assert torch.equal(drawn(0), reference)
    assert not torch.equal(drawn(1), reference) and torch.equal(drawn(1), drawn(1))
    assert not torch.equal(drawn(1), drawn(1, epoch=4))


DDP = ["--trainer.accelerator=cpu", "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.enable_progress_bar=false",
       "--trainer.enable_model_summary=false", "--trainer.precision=32-true", "--trainer.check_val_every_n_epoch=1"]


def recorder(folder: Path) -> str:
    return "--trainer.callbacks+=" + json.dumps({"class_path": "tests.test_rank_randomness.RecordDraws",
                                                 "init_args": {"folder": str(folder)}})


@pytest.mark.slow
def test_two_ranks_draw_their_own_fresh_batches_and_the_same_when_run_again(tmp_path):
    args = ["fit", "--config", str(CONFIGS / "exp_fit.yaml"), *DDP, "--trainer.max_epochs=2",
            "--data.init_args.steps_per_epoch=3"]
    for name in ("first", "again"):
        (tmp_path / name).mkdir()
        done = run_train([*args, recorder(tmp_path / f"{name}-draws")], tmp_path / name, extra_path=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
    first, again = ({rank: draws(tmp_path / f"{name}-draws", rank) for rank in (0, 1)} for name in ("first", "again"))
    assert first == again and len(first[0]) == len(first[1]) == 6
    for key in first[0]:
        assert first[0][key]["inputs"] != first[1][key]["inputs"], key  # each rank its own fresh batch
        assert first[0][key]["rng"] != first[1][key]["rng"], key  # and its own global RNG (dropout)


@pytest.mark.slow
def test_a_killed_two_rank_run_with_augmentation_resumes_every_rank_s_draws(tmp_path):
    """Fashion (dropout, one-cycle, augmentation from epoch 1) on two gloo ranks, all images alike so that a batch shows
    its augmentation only: uninterrupted, and SIGKILLed on both ranks at epoch 2, batch 1, then resumed from last.ckpt.
    The killed run repeats the uninterrupted one's draws up to the kill (a rerun), the ranks draw differently, and the
    resumed run continues each rank's draws and ends with the uninterrupted run's metrics."""
    data = identical_images(tmp_path / "tiny")
    args = ["fit", "--config", str(CONFIGS / "fashion_cnn.yaml"), *DDP, "--trainer.max_epochs=3",
            f"--data.init_args.data_dir={data}", "--data.init_args.download=false", "--data.init_args.val_size=16",
            "--data.init_args.batch_size=16", "--data.init_args.augment_from_epoch=1"]
    kill = json.dumps({"class_path": "tests.helpers.KillAtBatch", "init_args": {"epoch": 2, "batch": 1}})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = {}
    for name, extra in (("whole", []), ("killed", [f"--trainer.callbacks+={kill}"])):
        (tmp_path / name).mkdir()
        runs[name] = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args, recorder(tmp_path / f"{name}-draws"),
                                       *extra], cwd=tmp_path / name, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
        errors = runs[name].communicate(timeout=600)[1]  # one after the other: two DDP runs at once would share 2 cores
        assert runs[name].returncode == (0 if name == "whole" else -signal.SIGKILL), errors[-3000:]
    run_dir = tmp_path / "killed" / "lightning_logs" / "fashion_cnn" / "version_0"
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    states = next(state for key, state in saved["callbacks"].items() if "GlobalRNGState" in key)
    assert len(states["ranks"]) == 2 and not torch.equal(states["ranks"][0]["torch"], states["ranks"][1]["torch"])
    resumed = run_train([*args, recorder(tmp_path / "resumed-draws"), "--ckpt_path", "last"], tmp_path / "killed",
                        extra_path=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in (0, 1):
        whole, killed, after = (draws(tmp_path / f"{name}-draws", rank) for name in ("whole", "killed", "resumed"))
        assert killed == {key: whole[key] for key in killed} and len(killed) == 2 * 3 + 2  # epochs 0, 1; (2, 0), (2, 1)
        assert after == {key: whole[key] for key in whole if key[0] == 2}  # the epoch that was cut, every draw again
    whole = draws(tmp_path / "whole-draws", 0), draws(tmp_path / "whole-draws", 1)
    for key in whole[0]:
        assert whole[0][key]["rng"] != whole[1][key]["rng"], key  # dropout differs between ranks
        if key[0] >= 1:  # augmented epochs: the same images, flipped and shifted differently
            assert whole[0][key]["inputs"] != whole[1][key]["inputs"], key
    expected = json.loads((tmp_path / "whole" / "lightning_logs" / "fashion_cnn" / "version_0" / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    for key in ("train", "val", "test", "global_step", "epochs"):
        assert got[key] == expected[key], key
