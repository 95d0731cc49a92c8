"""The benchmark's cases (lab/benchmark.py, docs/speed.md): for each, the template's side (a config built by
``lightning_models.build`` and fitted chunk by chunk) and the plain PyTorch loop doing the same work from the same
weights, or the template's variants, handed to lab/benchmark_stats.py to be timed interleaved; each case returns its
record for the report.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytorch_lightning as pl
import torch
from benchmark_stats import Interleaved, Side, bootstrap_interval, compare, pair_record, timed
from pytorch_lightning.cli import SaveConfigCallback
from torch.nn import functional as F

from datamodules.images import ImageBatches
from lightning_models import build, run
from lightning_models.machine import cpu_has_native_bf16
from lightning_models.training.experiments import parse_seeds
from lightning_models.training.run import Parts
from lightning_models.util import mean_spread
from lightning_models.workflows.seeds import seed_options

ROOT = Path(__file__).resolve().parents[1]

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false",
         "--last_checkpoint=null"]
SOURCE_CONFIG = ROOT / "configs" / "source" / "fashion_cnn.yaml"
DEFAULT_CONFIG = ROOT / "configs" / "fashion_cnn.yaml"
# Many short chunks pair the two sides within the same moment of a drifting machine, which narrows the
# interval of the median ratio more than fewer, longer chunks of the same total (docs/speed.md).
LOOP_CHUNKS = (5, 180)


def parts(config: Path, *overrides: str) -> Parts:
    """``build``'s parts less the callback that writes config.yaml at every fit: the benchmark fits once per chunk."""
    built = build(config, *overrides)
    built.trainer.callbacks[:] = [callback for callback in built.trainer.callbacks if not isinstance(callback, SaveConfigCallback)]
    return built


def template_side(config: Path, overrides: tuple[str, ...], loss: Callable[[pl.Trainer], float] | None = None) -> tuple[Parts, Side]:
    """The config's parts, and a side fitting them with a fresh Trainer per chunk (a finished one does not fit again)."""
    built = parts(config, *overrides)
    built.datamodule.prepare_data()
    built.datamodule.setup("fit")

    def prepare() -> Callable[[], float]:
        trainer = parts(config, *overrides).trainer

        def fit() -> float:
            trainer.fit(built.model, datamodule=built.datamodule)
            return loss(trainer) if loss else float(trainer.callback_metrics["train/loss"])
        return fit

    return built, prepare


def iris_full_batch(args: argparse.Namespace) -> dict:
    updates, chunk = (2_000 if args.quick else 10_000), 1_000
    config = ROOT / "configs" / "source" / "iris_mlp_classifier.yaml"
    overrides = (f"--trainer.max_epochs={chunk // 100}", "--trainer.accelerator=cpu", *QUIET)  # 100 updates per step

    built, template = template_side(config, overrides, lambda trainer: loss(built.model))
    plain = type(built.model.net)(4, 3, [6], "sigmoid")
    plain.load_state_dict(built.model.net.state_dict())
    x, y = built.datamodule.splits["train"]
    target = F.one_hot(y, 3).float()

    @torch.no_grad()
    def loss(net: torch.nn.Module, softmax: bool = False) -> float:
        return F.mse_loss(torch.softmax(net(x), dim=1) if softmax else net(x), target).item()

    def plain_loop() -> float:
        optimizer = torch.optim.SGD(plain.parameters(), lr=0.01)
        for _ in range(chunk):
            optimizer.zero_grad()
            F.mse_loss(torch.softmax(plain(x), dim=1), target).backward()
            optimizer.step()
        return loss(plain, softmax=True)

    return compare("iris_full_batch", f"{updates} full-batch updates, 4-6-3 MLP, chunks of {chunk}",
                   lambda: {"template": template, "plain": lambda: plain_loop}, updates // chunk)


def fashion_overrides(args: argparse.Namespace, batches: int, *extra: str, accelerator: str = "cpu") -> tuple[str, ...]:
    small = ("--data.init_args.val_size=64",) if args.quick else ()  # quick mode also runs on a few hundred images
    return ("--trainer.max_epochs=1", f"--data.data_dir={args.data_dir}", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0", f"--trainer.accelerator={accelerator}",
            f"--trainer.limit_train_batches={batches}", "--trainer.callbacks=[]", *QUIET, *small, *extra)


class PlainLoop:
    """Text 004's loop, ``limit`` batches per call, going on from chunk to chunk as the template's single fit does;
    returns the mean loss of every batch so far (the template's epoch-mean ``train/loss``)."""

    def __init__(self, net: torch.nn.Module, batches: Iterable, limit: int) -> None:
        self.net, self.batches, self.limit = net.train(), iter(batches), limit
        self.optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        self.total, self.count = torch.zeros(()), 0

    def __call__(self) -> float:
        for _ in range(self.limit):
            images, labels = next(self.batches)
            loss = F.cross_entropy(self.net(images), labels)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.total += loss.detach() * len(labels)
            self.count += len(labels)
        return (self.total / self.count).item()


def fashion_vs_loop(args: argparse.Namespace, case: str, batch_size: int = 64) -> dict:
    """One template fit with the plain loop's chunks run between its own; the first chunks (warm-up) are left out."""
    chunk, chunks = (2, 3) if args.quick else LOOP_CHUNKS
    built = template_side(SOURCE_CONFIG, fashion_overrides(args, chunk * chunks, f"--data.init_args.batch_size={batch_size}"))[0]
    model, datamodule, trainer = built.model, built.datamodule, built.trainer
    if case == "fashion_vs_source_loop":  # text 004's loop as written: torchvision's dataset, ToTensor, a shuffling DataLoader, its net
        from torchvision import transforms
        from torchvision.datasets import FashionMNIST

        net, what = type(model.net)(channels_last=False), "source recipe"
        dataset = FashionMNIST(str(datamodule.root), train=True, transform=transforms.ToTensor())
        batches = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    else:  # the same net (layout included) fed the template's own epoch-0 batches: only the loop differs
        net, what = type(model.net)(), "same batches"
        images, labels = datamodule.splits["train"]
        batches = ImageBatches(images, labels, datamodule.batch_size, True, datamodule.seed, transform=datamodule.to_inputs)
    net.load_state_dict(model.net.state_dict())
    clock = Interleaved(PlainLoop(net, batches, chunk), chunk)
    trainer.callbacks.append(clock)
    trainer.fit(model, datamodule=datamodule)
    times = {side: values[1 if args.quick else 4:] or values for side, values in clock.times.items()}
    losses = {"template": float(trainer.callback_metrics["train/loss"]), "plain": clock.plain_loss}
    record = pair_record(case, f"{chunks} x {chunk} steps in one fit, batch {batch_size}, {what}", times, losses)
    # the template's own cost per step: what its chunk takes beyond the plain loop's, per step
    extra_ms = [(t - p) / chunk * 1000 for t, p in zip(times["template"], times["plain"])]
    record |= {"batch_size": batch_size, "overhead_ms_per_step": statistics.median(extra_ms),
               "overhead_ms_ci95": list(bootstrap_interval(extra_ms)),
               "plain_ms_per_step": statistics.median(times["plain"]) / chunk * 1000}
    return record


def image_folder_vs_fashion(args: argparse.Namespace) -> dict:
    """The default config's step fed by ImageFolderDataModule (PNGs decoded once into its cache) vs. FashionMNISTDataModule;
    the PNGs, ``<class>/<index>.png`` under ``--work-dir``, are written once and reused while complete."""
    from PIL import Image
    from torchvision.datasets import FashionMNIST

    from datamodules.fashion_mnist import prepare_raw_files

    train = FashionMNIST(str(prepare_raw_files(Path(args.data_dir), download=False)), train=True)
    chunk, chunks, count = (2, 2, min(1_000, len(train.data))) if args.quick else (100, 10, min(60_000, len(train.data)))
    root = Path(args.work_dir) / f"fashion-train-{count}"
    if not (root / ".complete").exists():
        print(f"image_folder_vs_fashion: writing {count} PNGs to {root} (once)", flush=True)
        for index, (image, label) in enumerate(zip(train.data[:count].numpy(), train.targets[:count].tolist())):
            folder = root / train.classes[label].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:05d}.png")
        (root / ".complete").touch()
    fashion = template_side(DEFAULT_CONFIG, fashion_overrides(args, chunk))[1]
    started = time.perf_counter()  # scan + decode + cache on the first run, else reading the cache
    folder = template_side(DEFAULT_CONFIG, fashion_overrides(args, chunk, "--data=datamodules.ImageFolderDataModule",
                                                             f"--data.init_args.root={root}"))[1]
    setup_s = time.perf_counter() - started
    sides = {"fashion": fashion, "image_folder": folder}
    record = compare("image_folder_vs_fashion", f"{chunks} x {chunk} steps of the default config (batch 128), "
                     f"{count} training images as PNGs vs the IDX files", lambda: sides, chunks, samples=128 * chunk)
    record["folder_setup_s"] = setup_s
    record["no_slower_than_5_percent"] = record["ratio_ci95_by_side"]["image_folder"][1] <= 1.05
    return record


PRECISIONS = {  # name -> overrides of the default Fashion-MNIST config
    f"{name}{suffix}": (f"--trainer.precision={precision}", f"--model.init_args.net.init_args.channels_last={layout}")
    for name, precision in (("fp32", "32-true"), ("bf16", "bf16-mixed")) for suffix, layout in (("", "false"), ("_channels_last", "true"))}
# The config's AdamW is fused (one kernel for all parameters); this is torch's default per-tensor loop.
PRECISIONS["fp32_channels_last_unfused"] = (*PRECISIONS["fp32_channels_last"], "--model.init_args.optimizer.init_args.fused=false")


def fashion_precision(args: argparse.Namespace) -> dict:
    """The default config's training step in five variants, template only; ratios are time / fp32's time."""
    chunk, chunks = (5, 2) if args.quick else (40, 8)
    record = compare("fashion_precision", f"{chunks} x {chunk} steps of the default config (batch 128), per variant",
                     lambda: {name: template_side(DEFAULT_CONFIG, fashion_overrides(args, chunk, *extra))[1]
                              for name, extra in PRECISIONS.items()}, chunks, samples=128 * chunk)
    record["cpu_bf16"] = cpu_has_native_bf16()
    return record


class ValidationClock(pl.Callback):
    """Seconds since training started and val/acc at each validation of the fit."""

    def __init__(self) -> None:
        self.validations: list[dict] = []
        self.started = self.train_s = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started is not None and self.train_s is None:  # not the sanity check, nor run's validation after fit
            self.validations.append({"epoch": trainer.current_epoch + 1, "seconds": time.perf_counter() - self.started,
                                     "val_acc": float(trainer.callback_metrics["val/acc"])})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_s = time.perf_counter() - self.started


def time_to_accuracy(args: argparse.Namespace) -> dict:
    quick = ("--trainer.max_epochs=4", "--trainer.limit_train_batches=2", "--data.init_args.val_size=64") if args.quick else ()
    runs = []
    for seed in parse_seeds(args.seeds):
        clock = ValidationClock()
        result = run(DEFAULT_CONFIG, f"--data.data_dir={args.data_dir}", *QUIET[:2], *seed_options(seed),
                     *quick, callbacks=[clock])
        reached = next((v for v in clock.validations if v["val_acc"] >= args.threshold), {})
        machine = result.record["machine"]
        runs.append({"seed": seed, "precision": result.record["precision"], "reached": bool(reached),
                     "epoch": reached.get("epoch"), "seconds": reached.get("seconds"), "train_s": clock.train_s,
                     "epochs": len(clock.validations), "test_acc": result.metrics["test"]["test/acc"],
                     "run_dir": str(result.folder), "validations": clock.validations})
    accuracies = [r["test_acc"] for r in runs]
    return {"case": "time_to_accuracy", "work": f"configs/fashion_cnn.yaml as shipped until val/acc >= {args.threshold}",
            "threshold": args.threshold, "precision": runs[0]["precision"], "cpu": machine["cpu"],
            "cpu_native_bf16": machine["cpu_native_bf16"], "template_s": statistics.fmean(r["train_s"] for r in runs),
            "plain_s": None, "ratio": None, "template_loss": None, "plain_loss": None,
            "test_acc_mean": mean_spread(accuracies)[0], "test_acc_std": None if len(runs) < 2 else mean_spread(accuracies)[1],
            "runs": runs}


def fashion_gpu(args: argparse.Namespace) -> dict | None:
    if not torch.cuda.is_available():
        print("fashion_gpu: skipped (no GPU)")
        return None
    batches = 50 if args.quick else 10**9
    seconds, loss = timed(template_side(SOURCE_CONFIG, fashion_overrides(args, batches, accelerator="gpu"))[1]())
    return {"case": "fashion_gpu", "work": "1 epoch on the GPU-resident path", "template_s": seconds, "plain_s": None,
            "ratio": None, "template_loss": loss, "plain_loss": None, "device": torch.cuda.get_device_name(),
            "samples_per_s": min(batches, 938) * 64 / seconds}  # the source recipe: 938 batches of 64 an epoch
