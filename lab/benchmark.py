"""Template vs. a hand-written PyTorch loop on identical work, in one process and one run.

    python lab/benchmark.py --data-dir ../shared/data      # iris, fashion, precision (and gpu on a GPU)
    python lab/benchmark.py --quick                       # small versions, for CI and smoke tests
    python lab/benchmark.py --cases time_to_accuracy --data-dir ../shared/data
    python lab/benchmark.py --cases image_folder_vs_fashion --data-dir ../shared/data
    python lab/benchmark.py --data-dir ../shared/data --json reports/benchmark.json

Cases:
  iris_full_batch          text 000's 4-6-3 MLP, 10 000 full-batch SGD updates in chunks of 1 000
                           (configs/source/iris_mlp_classifier.yaml) vs. the plain loop.
  fashion_vs_source_loop   the source recipe (FashionCNN, Adam 1e-3, batch 64), one fit of 180 chunks of 5 steps
                           with the plain loop's chunks run between them (Interleaved): the template's tensor
                           path vs. text 004's loop (torchvision dataset, ToTensor, DataLoader).
  fashion_vs_tensor_loop   the same vs. a plain loop fed the same batches from the same tensors.
  fashion_precision        the default config's step (batch 128): fp32 / bf16-mixed x channels-last off / on,
                           and fp32 channels-last with torch's per-tensor AdamW instead of the config's fused one.
  time_to_accuracy         the default Fashion-MNIST config until val/acc first reaches 93% (not in the
                           default set: a full training run).
  image_folder_vs_fashion  the default config's step fed by ImageFolderDataModule from Fashion-MNIST's 60 000
                           training images written as PNGs (once, to a temporary folder) vs. by
                           FashionMNISTDataModule; also the folder's set-up time (not in the default set).
  fashion_gpu              on a GPU only: epoch time and samples/s of the template's GPU-resident path.
The sides run interleaved in short chunks (fresh fits with the order rotating each round, or one fit
timed in chunks for the two Fashion loop cases); a ratio is the median of the per-chunk ratios with a
95% bootstrap interval, and a target counts as met when the interval's
upper end is under it. Each case starts its sides from the same weights; the final losses show the
same work was done.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import SaveConfigCallback
from torch.nn import functional as F

from datamodules.fashion_mnist import ImageBatches
from lightning_models import build
from lightning_models.machine import cpu_has_native_bf16
from lightning_models.run import Parts

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false",
         "--last_checkpoint=null"]


Side = Callable[[], Callable[[], float]]  # prepare (untimed) -> run one chunk (timed) -> loss


def timed(function: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    loss = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss


def parts(config: Path, *overrides: str) -> Parts:
    """``build``'s parts less the callback that writes the run's config.yaml at the start of every fit: a run
    writes it once, but the benchmark fits once per chunk, and the write is not the work being compared."""
    built = build(config, *overrides)
    built.trainer.callbacks[:] = [callback for callback in built.trainer.callbacks if not isinstance(callback, SaveConfigCallback)]
    return built


def fresh_trainer(config: Path, *overrides: str) -> pl.Trainer:
    """A new Trainer for one chunk (a finished Trainer does not fit again); built untimed."""
    return parts(config, *overrides).trainer


def iris_full_batch(updates: int) -> dict:
    chunk = min(updates, 1_000)
    return compare("iris_full_batch", f"{updates} full-batch updates, 4-6-3 MLP, chunks of {chunk}",
                   lambda: iris_sides(chunk), chunks=updates // chunk)


def iris_sides(updates: int) -> dict[str, Side]:
    config = ROOT / "configs" / "source" / "iris_mlp_classifier.yaml"
    overrides = (f"--trainer.max_epochs={updates // 100}", "--trainer.accelerator=cpu", *QUIET)  # 100 updates per step
    built = parts(config, *overrides)
    model, datamodule = built.model, built.datamodule
    plain = type(model.net)(4, 3, [6], "sigmoid")
    plain.load_state_dict(model.net.state_dict())
    datamodule.setup("fit")
    x, y = datamodule.splits["train"]
    target = F.one_hot(y, 3).float()

    def template() -> Callable[[], float]:
        trainer = fresh_trainer(config, *overrides)

        def run() -> float:
            trainer.fit(model, datamodule=datamodule)
            with torch.no_grad():
                return F.mse_loss(model(x), target).item()
        return run

    def plain_loop() -> Callable[[], float]:
        def run() -> float:
            optimizer = torch.optim.SGD(plain.parameters(), lr=0.01)
            for _ in range(updates):
                loss = F.mse_loss(torch.softmax(plain(x), dim=1), target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                return F.mse_loss(torch.softmax(plain(x), dim=1), target).item()
        return run

    return {"template": template, "plain": plain_loop}


def fashion_overrides(data_dir: str, batches: int, *extra: str, accelerator: str = "cpu", quick: bool = False) -> tuple[str, ...]:
    small = ("--data.init_args.val_size=64",) if quick else ()  # quick mode also runs on a few hundred images
    return ("--trainer.max_epochs=1", f"--data.data_dir={data_dir}", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0", f"--trainer.accelerator={accelerator}",
            f"--trainer.limit_train_batches={batches}", "--trainer.callbacks=[]", *QUIET, *small, *extra)


SOURCE_CONFIG = ROOT / "configs" / "source" / "fashion_cnn.yaml"
DEFAULT_CONFIG = ROOT / "configs" / "fashion_cnn.yaml"


def fashion_template(config: Path, overrides: tuple[str, ...]) -> tuple[pl.LightningModule, pl.LightningDataModule, Side]:
    built = parts(config, *overrides)
    model, datamodule = built.model, built.datamodule
    datamodule.prepare_data()
    datamodule.setup("fit")

    def template() -> Callable[[], float]:
        trainer = fresh_trainer(config, *overrides)

        def run() -> float:
            trainer.fit(model, datamodule=datamodule)
            return float(trainer.callback_metrics["train/loss"])
        return run

    return model, datamodule, template


class PlainLoop:
    """Text 004's training loop, run a chunk of ``limit`` batches at a time: one optimizer and one pass
    over ``batches`` that continue from chunk to chunk, as the template's single fit does; ``loss`` is
    the mean over every batch so far (the template's epoch-mean ``train/loss``)."""

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


class Interleaved(pl.Callback):
    """Times the template inside one ``Trainer.fit`` (no start-up per chunk): every ``chunk`` training
    steps it stops the template's clock and runs one chunk of the plain loop, timed on its own. torch's
    random state is swapped at each switch, so each side draws the dropout masks it would draw alone."""

    def __init__(self, plain: Callable[[], float], chunk: int) -> None:
        self.plain, self.chunk = plain, chunk
        self.times: dict[str, list[float]] = {"template": [], "plain": []}
        self.plain_loss = float("nan")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.plain_state = torch.get_rng_state()  # both sides start from the same state
        self.mark = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, index: int) -> None:
        if index and index % self.chunk == 0:
            self.switch()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch()

    def switch(self) -> None:
        self.times["template"].append(time.perf_counter() - self.mark)
        template_state = torch.get_rng_state()
        torch.set_rng_state(self.plain_state)
        seconds, self.plain_loss = timed(self.plain)
        self.times["plain"].append(seconds)
        self.plain_state = torch.get_rng_state()
        torch.set_rng_state(template_state)
        self.mark = time.perf_counter()


def compare_in_fit(case: str, work: str, config: Path, data_dir: str, chunk: int, chunks: int, quick: bool,
                   plain: Callable[[pl.LightningModule, pl.LightningDataModule], PlainLoop], warmup: int = 1) -> dict:
    """One template fit of ``chunk * chunks`` steps with the plain loop's chunks run between its own
    (``Interleaved``); the ratio is the median of per-chunk time ratios with its bootstrap interval. The
    first ``warmup`` chunks of each side are left out."""
    overrides = fashion_overrides(data_dir, chunk * chunks, quick=quick)
    built = parts(config, *overrides)
    model, datamodule, trainer = built.model, built.datamodule, built.trainer
    datamodule.prepare_data()
    datamodule.setup("fit")
    clock = Interleaved(plain(model, datamodule), chunk)
    trainer.callbacks.append(clock)
    trainer.fit(model, datamodule=datamodule)
    times = {side: values[warmup:] or values for side, values in clock.times.items()}
    ratios = [t / p for t, p in zip(times["template"], times["plain"])]
    low, high = bootstrap_interval(ratios)
    return {"case": case, "work": work, "template_s": sum(times["template"]), "plain_s": sum(times["plain"]),
            "ratio": statistics.median(ratios), "ratio_ci95": [low, high], "chunks": len(ratios),
            "template_loss": float(trainer.callback_metrics["train/loss"]), "plain_loss": clock.plain_loss,
            "template_times": times["template"], "plain_times": times["plain"], "ratios": ratios}


def source_loop(model: pl.LightningModule, datamodule: pl.LightningDataModule, limit: int) -> PlainLoop:
    """Text 004's loop as it wrote it: torchvision's dataset, ToTensor, a shuffling DataLoader, its net."""
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    net = type(model.net)(channels_last=False)
    net.load_state_dict(model.net.state_dict())
    dataset = FashionMNIST(str(datamodule.root), train=True, transform=transforms.ToTensor())
    return PlainLoop(net, DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)), limit)


def tensor_loop(model: pl.LightningModule, datamodule: pl.LightningDataModule, limit: int) -> PlainLoop:
    """The same net (layout included) fed the template's own epoch-0 batches: only the loop differs."""
    net = type(model.net)()
    net.load_state_dict(model.net.state_dict())
    images, labels = datamodule.splits["train"]
    return PlainLoop(net, ImageBatches(images, labels, datamodule.batch_size, True, datamodule.seed,
                                       transform=datamodule.to_inputs), limit)


# Many short chunks pair the two sides within the same moment of a drifting machine, which narrows the
# interval of the median ratio more than fewer, longer chunks of the same total (docs/speed.md).
LOOP_CHUNKS = (5, 180)


def fashion_vs_source_loop(data_dir: str, quick: bool) -> dict:
    chunk, chunks = (2, 3) if quick else LOOP_CHUNKS
    return compare_in_fit("fashion_vs_source_loop", f"{chunks} x {chunk} steps in one fit, batch 64, source recipe",
                          SOURCE_CONFIG, data_dir, chunk, chunks, quick, lambda m, d: source_loop(m, d, chunk),
                          warmup=1 if quick else 4)


def fashion_vs_tensor_loop(data_dir: str, quick: bool) -> dict:
    chunk, chunks = (2, 3) if quick else LOOP_CHUNKS
    return compare_in_fit("fashion_vs_tensor_loop", f"{chunks} x {chunk} steps in one fit, batch 64, same batches",
                          SOURCE_CONFIG, data_dir, chunk, chunks, quick, lambda m, d: tensor_loop(m, d, chunk),
                          warmup=1 if quick else 4)


def fashion_folder(data_dir: str, count: int, work_dir: Path) -> Path:
    """The first ``count`` Fashion-MNIST training images as ``<class>/<index>.png`` under ``work_dir``,
    written once and reused while complete."""
    from PIL import Image
    from torchvision.datasets import FashionMNIST

    from datamodules.fashion_mnist import prepare_raw_files

    train = FashionMNIST(str(prepare_raw_files(Path(data_dir), download=False)), train=True)
    count = min(count, len(train.data))
    root = work_dir / f"fashion-train-{count}"
    if (root / ".complete").exists():
        return root
    print(f"image_folder_vs_fashion: writing {count} PNGs to {root} (once)", flush=True)
    for index, (image, label) in enumerate(zip(train.data[:count].numpy(), train.targets[:count].tolist())):
        folder = root / train.classes[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")
    (root / ".complete").touch()
    return root


def image_folder_vs_fashion(data_dir: str, quick: bool, work_dir: Path | None = None) -> dict:
    """The default Fashion-MNIST config's training step fed by ImageFolderDataModule (from a folder of
    the training images as PNGs, decoded once into its cache) vs. FashionMNISTDataModule: the same
    net, optimizer and batch size; only the datamodule differs."""
    chunk, chunks, count = (2, 2, 1_000) if quick else (100, 10, 60_000)
    root = fashion_folder(data_dir, count, work_dir or Path(tempfile.gettempdir()) / "template-benchmark")
    folder_data = ("--data=datamodules.ImageFolderDataModule", f"--data.init_args.root={root}")
    setup: dict[str, float] = {}

    def sides() -> dict[str, Side]:
        fashion = fashion_template(DEFAULT_CONFIG, fashion_overrides(data_dir, chunk, quick=quick))[2]
        started = time.perf_counter()  # scan + decode + cache on the first run, else reading the cache
        folder = fashion_template(DEFAULT_CONFIG, fashion_overrides(data_dir, chunk, *folder_data, quick=quick))[2]
        setup["seconds"] = time.perf_counter() - started
        return {"fashion": fashion, "image_folder": folder}

    record = compare("image_folder_vs_fashion", f"{chunks} x {chunk} steps of the default config (batch 128), "
                     f"{count} training images as PNGs vs the IDX files", sides, chunks)
    record["samples_per_s"] = {name: 128 * chunk / seconds for name, seconds in record["times"].items()}
    record["folder_setup_s"] = setup["seconds"]
    record["no_slower_than_5_percent"] = record["ratio_ci95_by_side"]["image_folder"][1] <= 1.05
    return record


PRECISIONS = {  # name -> overrides of the default Fashion-MNIST config
    "fp32": ("--trainer.precision=32-true", "--model.init_args.net.init_args.channels_last=false"),
    "fp32_channels_last": ("--trainer.precision=32-true", "--model.init_args.net.init_args.channels_last=true"),
    "bf16": ("--trainer.precision=bf16-mixed", "--model.init_args.net.init_args.channels_last=false"),
    "bf16_channels_last": ("--trainer.precision=bf16-mixed", "--model.init_args.net.init_args.channels_last=true"),
    # The config's AdamW is fused (one kernel for all parameters); this is torch's default per-tensor loop.
    "fp32_channels_last_unfused": ("--trainer.precision=32-true", "--model.init_args.net.init_args.channels_last=true",
                                   "--model.init_args.optimizer.init_args.fused=false"),
}


def fashion_precision(data_dir: str, quick: bool) -> dict:
    """The default config's training step in five variants, template only; ratios are time / fp32's time."""
    chunk, chunks = (5, 2) if quick else (40, 8)

    def sides() -> dict[str, Side]:
        return {name: fashion_template(DEFAULT_CONFIG, fashion_overrides(data_dir, chunk, *extra, quick=quick))[2]
                for name, extra in PRECISIONS.items()}

    record = compare("fashion_precision", f"{chunks} x {chunk} steps of the default config (batch 128), per variant",
                     sides, chunks)
    batch = 128
    record["samples_per_s"] = {name: batch * chunk / seconds for name, seconds in record["times"].items()}
    record["cpu_bf16"] = cpu_has_native_bf16()
    return record


def time_to_accuracy(data_dir: str, quick: bool, target: float = 0.93) -> dict:
    """Wall time of the default Fashion-MNIST config (validating every epoch) until val/acc first reaches
    ``target``: EarlyStopping's stopping_threshold ends the run there."""
    from pytorch_lightning.callbacks import EarlyStopping

    extra = ("--trainer.limit_train_batches=10", "--trainer.limit_val_batches=5", "--trainer.max_epochs=2",
             "--data.init_args.val_size=64") if quick else ()
    built = parts(DEFAULT_CONFIG, f"--data.data_dir={data_dir}", *QUIET, "--trainer.callbacks=[]",
                  "--checkpoint.monitor=null", *extra)
    model, datamodule, trainer = built.model, built.datamodule, built.trainer
    stop = EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=target, patience=10**6)
    reached: dict[str, float] = {}

    class Clock(pl.Callback):
        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            acc = float(trainer.callback_metrics.get("val/acc", 0.0))
            if acc >= target and not reached and not trainer.sanity_checking:
                reached.update(seconds=time.perf_counter() - started, epoch=trainer.current_epoch + 1, val_acc=acc)

    trainer.callbacks.extend([stop, Clock()])
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    total = time.perf_counter() - started
    return {"case": "time_to_accuracy", "work": f"default Fashion-MNIST config until val/acc >= {target}",
            "template_s": reached.get("seconds", total), "plain_s": None, "ratio": None, "reached": bool(reached),
            "epochs": reached.get("epoch", trainer.current_epoch), "val_acc": reached.get("val_acc"),
            "template_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))), "plain_loss": None}


def fashion_gpu(data_dir: str, quick: bool) -> dict | None:
    if not torch.cuda.is_available():
        print("fashion_gpu: skipped (no GPU)")
        return None
    batches = 50 if quick else 10**9
    model, datamodule, template = fashion_template(SOURCE_CONFIG, fashion_overrides(data_dir, batches, accelerator="gpu"))
    run = template()
    seconds, loss = timed(run)
    samples = min(batches, 938) * datamodule.batch_size
    return {"case": "fashion_gpu", "work": "1 epoch on the GPU-resident path", "template_s": seconds, "plain_s": None,
            "ratio": None, "template_loss": loss, "plain_loss": None, "samples_per_s": samples / seconds,
            "device": torch.cuda.get_device_name()}


CASES = {"iris_full_batch": iris_full_batch, "fashion_vs_source_loop": fashion_vs_source_loop,
         "fashion_vs_tensor_loop": fashion_vs_tensor_loop, "fashion_precision": fashion_precision,
         "time_to_accuracy": time_to_accuracy, "image_folder_vs_fashion": image_folder_vs_fashion,
         "fashion_gpu": fashion_gpu}
GROUPS = {"iris": ["iris_full_batch"], "fashion": ["fashion_vs_source_loop", "fashion_vs_tensor_loop"],
          "precision": ["fashion_precision"], "data": ["image_folder_vs_fashion"], "gpu": ["fashion_gpu"]}


def selected_cases(text: str, parser: argparse.ArgumentParser) -> list[str]:
    chosen: list[str] = []
    for name in filter(None, (part.strip() for part in text.split(","))):
        if name not in CASES and name not in GROUPS:
            parser.error(f"--cases: unknown case {name!r}; choose from {', '.join([*CASES, *GROUPS])}")
        chosen += [case for case in GROUPS.get(name, [name]) if case not in chosen]
    return chosen


def bootstrap_interval(ratios: list[float], level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``ratios`` (seeded: the same ratios give the same interval)."""
    generator = random.Random(seed)
    medians = sorted(statistics.median(generator.choices(ratios, k=len(ratios))) for _ in range(resamples))
    tail = (1 - level) / 2
    return medians[int(tail * (resamples - 1))], medians[int(round((1 - tail) * (resamples - 1)))]


def compare(case: str, work: str, sides: Callable[[], dict[str, Side]], chunks: int) -> dict:
    """Runs the sides' chunks interleaved: round r runs one chunk of every side, the order rotated by r
    (the speed of shared cores drifts within minutes; short alternating chunks see the same minutes).
    Each side's ratio is the median over rounds of (its chunk time / the first side's chunk
    time in the same round) ["template" / "plain" for two sides], with a 95% bootstrap interval over
    rounds. ``sides()`` builds every side from the same starting point, untimed; so is each chunk's
    preparation (a fresh Trainer)."""
    built = sides()
    names = list(built)
    times: dict[str, list[float]] = {name: [] for name in names}
    losses: dict[str, float] = {}
    for round_ in range(chunks):
        order = names[round_ % len(names):] + names[: round_ % len(names)]
        for name in order:
            run = built[name]()
            torch.manual_seed(round_)  # the same dropout masks on every side
            seconds, losses[name] = timed(run)
            times[name].append(seconds)
    if names == ["template", "plain"]:
        ratios = [t / p for t, p in zip(times["template"], times["plain"])]
        low, high = bootstrap_interval(ratios)
        return {"case": case, "work": work, "template_s": sum(times["template"]), "plain_s": sum(times["plain"]),
                "ratio": statistics.median(ratios), "ratio_ci95": [low, high], "chunks": chunks,
                "template_loss": losses["template"], "plain_loss": losses["plain"],
                "template_times": times["template"], "plain_times": times["plain"], "ratios": ratios}
    base = names[0]
    per_side = {name: [t / b for t, b in zip(times[name], times[base])] for name in names[1:]}
    return {"case": case, "work": work, "template_s": sum(times[base]), "plain_s": None, "ratio": None,
            "chunks": chunks, "times": {name: statistics.median(values) for name, values in times.items()},
            "ratios_vs": base, "ratio_by_side": {name: statistics.median(r) for name, r in per_side.items()},
            "ratio_ci95_by_side": {name: list(bootstrap_interval(r)) for name, r in per_side.items()},
            "template_loss": losses[base], "plain_loss": None, "all_times": times}


TARGETS = {"iris_full_batch": 1.5, "fashion_vs_source_loop": 1.0, "fashion_vs_tensor_loop": 1.05}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few chunks of a few steps per case: checks, not results")
    parser.add_argument("--data-dir", default=None, help="folder holding FashionMNIST/raw/ (Fashion cases skipped without it)")
    parser.add_argument("--cases", default="iris,fashion,precision,gpu",
                        help=f"comma-separated case names ({', '.join(CASES)}) or groups ({', '.join(GROUPS)})")
    parser.add_argument("--json", default=None, help="write one record per case to this file")
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "template-benchmark"),
                        help="where image_folder_vs_fashion writes its folder of PNGs (once; reused)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric"):  # "Seed set to 0" at every chunk's Trainer, GPU/TPU lines
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.manual_seed(0)
    cases = selected_cases(args.cases, parser)
    results: list[dict] = []
    for case in cases:
        if case == "iris_full_batch":
            results.append(iris_full_batch(2_000 if args.quick else 10_000))
        elif not args.data_dir:
            print(f"{case}: skipped (give --data-dir, the folder holding FashionMNIST/raw/)")
        elif case == "image_folder_vs_fashion":
            results.append(image_folder_vs_fashion(args.data_dir, args.quick, Path(args.work_dir)))
        elif (record := CASES[case](args.data_dir, args.quick)) is not None:
            results.append(record)
    print(f"\n{'case':<24} {'template s':>11} {'plain s':>9} {'ratio [95% interval]':>22} {'target':>7} "
          f"{'template loss':>14} {'plain loss':>11}")
    for r in results:
        plain = "-" if r["plain_s"] is None else f"{r['plain_s']:.3f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f} [{r['ratio_ci95'][0]:.3f}, {r['ratio_ci95'][1]:.3f}]"
        target = TARGETS.get(r["case"])
        verdict = "-" if target is None or r["ratio"] is None else ("met" if r["ratio_ci95"][1] < target else "not met")
        r["target"], r["target_met"] = target, None if verdict == "-" else verdict == "met"
        plain_loss = "-" if r["plain_loss"] is None else f"{r['plain_loss']:.6f}"
        print(f"{r['case']:<24} {r['template_s']:>11.3f} {plain:>9} {ratio:>22} {verdict:>7} "
              f"{r['template_loss']:>14.6f} {plain_loss:>11}")
        for name, value in r.get("ratio_by_side", {}).items():
            low, high = r["ratio_ci95_by_side"][name]
            print(f"  {name:<22} {r['samples_per_s'][name]:>8.0f} samples/s, time vs {r['ratios_vs']} "
                  f"{value:.3f} [{low:.3f}, {high:.3f}]")
        if r["case"] == "fashion_precision":
            print(f"  {r['ratios_vs']:<22} {r['samples_per_s'][r['ratios_vs']]:>8.0f} samples/s "
                  f"(CPU with native bf16: {r['cpu_bf16']})")
        if r["case"] == "image_folder_vs_fashion":
            print(f"  image folder set-up {r['folder_setup_s']:.1f} s; per-step time at most 5% over the IDX path's "
                  f"(interval's upper end <= 1.05): {'met' if r['no_slower_than_5_percent'] else 'not met'}")
        if r["case"] == "time_to_accuracy":
            reached = f"after {r['epochs']} epochs (val/acc {r['val_acc']:.4f})" if r["reached"] else "not reached"
            print(f"  {reached}")
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick}
    print(f"torch {meta['torch']}, {meta['threads']} threads; template/plain times are sums over chunks, "
          "ratios medians of per-round ratios")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "cases": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
