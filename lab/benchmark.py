"""Template vs. a hand-written PyTorch loop on identical work, in one process; and time to accuracy (docs/speed.md).

    python lab/benchmark.py --data-dir ../shared/data      # iris, fashion, precision (and gpu on a GPU)
    python lab/benchmark.py --quick                       # small versions, for CI and smoke tests
    python lab/benchmark.py --cases time_to_accuracy --data-dir ../shared/data --seeds 0,1,2
    python lab/benchmark.py --data-dir ../shared/data --json reports/benchmark.json

Cases (groups: iris, fashion, precision, data, gpu):
  iris_full_batch          text 000's 4-6-3 MLP, 10 000 full-batch SGD updates in chunks of 1 000, vs. the plain loop
  fashion_vs_source_loop   the source recipe in one fit of 180 x 5 steps, text 004's DataLoader loop run between chunks
  fashion_vs_tensor_loop   the same vs. a plain loop fed the same batches from the same tensors
  fashion_precision        the default config's step: fp32 / bf16-mixed x channels-last off / on, and per-tensor AdamW
  time_to_accuracy         configs/fashion_cnn.yaml as shipped, per --seeds: epoch and seconds to --threshold val/acc,
                           training seconds, the best checkpoint's test accuracy (not in the default set)
  image_folder_vs_fashion  the default config's step fed by ImageFolderDataModule from the 60 000 training images
                           as PNGs (written once to --work-dir) vs. FashionMNISTDataModule (not in the default set)
  fashion_gpu              on a GPU only: epoch time and samples/s of the template's GPU-resident path
Sides run interleaved in short chunks; a ratio is the median of per-chunk ratios with a 95% bootstrap interval, a
target met when its upper end is under it. --json replaces the cases run in a file of the same kind (quick or not).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import scipy.stats
import torch
from pytorch_lightning.cli import SaveConfigCallback
from torch.nn import functional as F

from datamodules.fashion_mnist import ImageBatches
from lightning_models import build, run
from lightning_models.machine import cpu_has_native_bf16
from lightning_models.training.experiments import parse_seeds
from lightning_models.training.run import Parts
from lightning_models.workflows.seeds import seed_options

ROOT = Path(__file__).resolve().parents[1]

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false",
         "--last_checkpoint=null"]
SOURCE_CONFIG = ROOT / "configs" / "source" / "fashion_cnn.yaml"
DEFAULT_CONFIG = ROOT / "configs" / "fashion_cnn.yaml"
# Many short chunks pair the two sides within the same moment of a drifting machine, which narrows the
# interval of the median ratio more than fewer, longer chunks of the same total (docs/speed.md).
LOOP_CHUNKS = (5, 180)
TARGETS = {"iris_full_batch": 1.5, "fashion_vs_source_loop": 1.0, "fashion_vs_tensor_loop": 1.05}
Side = Callable[[], Callable[[], float]]  # prepare (untimed) -> run one chunk (timed) -> loss


def timed(function: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    loss = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss


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


def bootstrap_interval(ratios: list[float], level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``ratios`` (scipy's, seeded: the same ratios give the same interval)."""
    if len(set(ratios)) < 2:  # scipy returns NaN for a sample without spread; its interval is the value itself
        return (ratios[0], ratios[0]) if ratios else (float("nan"), float("nan"))
    found = scipy.stats.bootstrap((ratios,), np.median, confidence_level=level, n_resamples=resamples, method="percentile",
                                  random_state=seed)
    return float(found.confidence_interval.low), float(found.confidence_interval.high)


def pair_record(case: str, work: str, times: dict[str, list[float]], losses: dict[str, float]) -> dict:
    ratios = [t / p for t, p in zip(times["template"], times["plain"])]
    return {"case": case, "work": work, "template_s": sum(times["template"]), "plain_s": sum(times["plain"]),
            "ratio": statistics.median(ratios), "ratio_ci95": list(bootstrap_interval(ratios)), "chunks": len(ratios),
            "template_loss": losses["template"], "plain_loss": losses["plain"],
            "template_times": times["template"], "plain_times": times["plain"], "ratios": ratios}


def compare(case: str, work: str, sides: Callable[[], dict[str, Side]], chunks: int, samples: int = 0) -> dict:
    """Round r runs a chunk of every side, the order rotated by r (shared cores drift within minutes); a side's ratio
    is the median over rounds of its time / the first side's ("template" / "plain" for two sides)."""
    built = sides()
    names = list(built)
    times: dict[str, list[float]] = {name: [] for name in names}
    losses: dict[str, float] = {}
    for round_ in range(chunks):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            chunk = built[name]()
            torch.manual_seed(round_)  # the same dropout masks on every side
            seconds, losses[name] = timed(chunk)
            times[name].append(seconds)
    if names == ["template", "plain"]:
        return pair_record(case, work, times, losses)
    base = names[0]
    per_side = {name: [t / b for t, b in zip(times[name], times[base])] for name in names[1:]}
    record = {"case": case, "work": work, "template_s": sum(times[base]), "plain_s": None, "ratio": None,
              "chunks": chunks, "times": {name: statistics.median(values) for name, values in times.items()},
              "ratios_vs": base, "ratio_by_side": {name: statistics.median(r) for name, r in per_side.items()},
              "ratio_ci95_by_side": {name: list(bootstrap_interval(r)) for name, r in per_side.items()},
              "template_loss": losses[base], "plain_loss": None, "all_times": times}
    if samples:
        record["samples_per_s"] = {name: samples / seconds for name, seconds in record["times"].items()}
    return record


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


class Interleaved(pl.Callback):
    """Every ``chunk`` steps of one ``Trainer.fit``, stops the template's clock and runs a chunk of the plain loop; torch's
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
        with torch.random.fork_rng(devices=[]):  # the template's state comes back on leaving
            torch.set_rng_state(self.plain_state)
            seconds, self.plain_loss = timed(self.plain)
            self.plain_state = torch.get_rng_state()
        self.times["plain"].append(seconds)
        self.mark = time.perf_counter()


def fashion_vs_loop(args: argparse.Namespace, case: str) -> dict:
    """One template fit with the plain loop's chunks run between its own; the first chunks (warm-up) are left out."""
    chunk, chunks = (2, 3) if args.quick else LOOP_CHUNKS
    built = template_side(SOURCE_CONFIG, fashion_overrides(args, chunk * chunks))[0]
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
    return pair_record(case, f"{chunks} x {chunk} steps in one fit, batch 64, {what}", times, losses)


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
            "test_acc_mean": statistics.fmean(accuracies), "test_acc_std": statistics.stdev(accuracies) if len(runs) > 1 else 0.0,
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


CASES: dict[str, Callable[[argparse.Namespace], dict | None]] = {
    "iris_full_batch": iris_full_batch,
    "fashion_vs_source_loop": lambda args: fashion_vs_loop(args, "fashion_vs_source_loop"),
    "fashion_vs_tensor_loop": lambda args: fashion_vs_loop(args, "fashion_vs_tensor_loop"),
    "fashion_precision": fashion_precision, "time_to_accuracy": time_to_accuracy,
    "image_folder_vs_fashion": image_folder_vs_fashion, "fashion_gpu": fashion_gpu}
GROUPS = {"iris": ["iris_full_batch"], "fashion": ["fashion_vs_source_loop", "fashion_vs_tensor_loop"],
          "precision": ["fashion_precision"], "data": ["image_folder_vs_fashion"], "gpu": ["fashion_gpu"]}


def details(r: dict) -> list[str]:
    """The lines under a case's row of the table."""
    lines = [f"{name:<22} {r['samples_per_s'][name]:>8.0f} samples/s, time vs {r['ratios_vs']} {value:.3f} "
             f"[{r['ratio_ci95_by_side'][name][0]:.3f}, {r['ratio_ci95_by_side'][name][1]:.3f}]"
             for name, value in r.get("ratio_by_side", {}).items()]
    if r["case"] == "fashion_precision":
        lines.append(f"{r['ratios_vs']:<22} {r['samples_per_s'][r['ratios_vs']]:>8.0f} samples/s (CPU with native bf16: {r['cpu_bf16']})")
    if r["case"] == "image_folder_vs_fashion":
        lines.append(f"image folder set-up {r['folder_setup_s']:.1f} s; per-step time at most 5% over the IDX path's "
                     f"(interval's upper end <= 1.05): {'met' if r['no_slower_than_5_percent'] else 'not met'}")
    if r["case"] == "time_to_accuracy":
        lines.append(f"precision {r['precision']}; CPU {r['cpu']} (native bf16: {r['cpu_native_bf16']})")
        lines += [f"seed {x['seed']}: val/acc >= {r['threshold']} " + (f"at epoch {x['epoch']}, {x['seconds']:.1f} s" if x["reached"]
                  else "not reached") + f"; {x['epochs']} epochs in {x['train_s']:.1f} s; best checkpoint's test/acc {x['test_acc']:.4f}"
                  for x in r["runs"]]
        lines.append(f"test/acc {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} over {len(r['runs'])} seed(s)")
    return lines


def write_json(path: Path, meta: dict, results: list[dict]) -> None:
    old = json.loads(path.read_text()) if path.is_file() else {"meta": {}, "cases": []}
    if old["meta"].get("quick") == meta["quick"]:  # same kind of run: the other cases' records stay
        new = {r["case"]: r for r in results}
        results = [new.pop(r["case"], r) for r in old["cases"]] + list(new.values())
        meta = {**old["meta"], **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "cases": results}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few chunks of a few steps per case: checks, not results")
    parser.add_argument("--data-dir", default=None, help="folder holding FashionMNIST/raw/ (Fashion cases skipped without it)")
    parser.add_argument("--cases", default="iris,fashion,precision,gpu",
                        help=f"comma-separated case names ({', '.join(CASES)}) or groups ({', '.join(GROUPS)})")
    parser.add_argument("--json", default=None, help="write one record per case to this file")
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "template-benchmark"),
                        help="where image_folder_vs_fashion writes its folder of PNGs (once; reused)")
    parser.add_argument("--seeds", default="0", help="time_to_accuracy's seeds, e.g. 0,1,2 or 0-2 (default 0)")
    parser.add_argument("--threshold", type=float, default=0.93, help="time_to_accuracy's val/acc to reach (default 0.93)")
    args = parser.parse_args(argv)
    cases: list[str] = []
    for name in filter(None, (part.strip() for part in args.cases.split(","))):
        if name not in CASES and name not in GROUPS:
            parser.error(f"--cases: unknown case {name!r}; choose from {', '.join([*CASES, *GROUPS])}")
        cases += [case for case in GROUPS.get(name, [name]) if case not in cases]
    try:
        parse_seeds(args.seeds)
    except ValueError as error:
        parser.error(f"--{error}")
    if not 0 < args.threshold <= 1:
        parser.error(f"--threshold {args.threshold}: give a validation accuracy in (0, 1]")
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric"):  # "Seed set to 0" at every chunk's Trainer, GPU/TPU lines
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.manual_seed(0)
    results: list[dict] = []
    for case in cases:
        if case != "iris_full_batch" and not args.data_dir:
            print(f"{case}: skipped (give --data-dir, the folder holding FashionMNIST/raw/)")
        elif (record := CASES[case](args)) is not None:
            results.append(record)
    print(f"\n{'case':<24} {'template s':>11} {'plain s':>9} {'ratio [95% interval]':>22} {'target':>7} "
          f"{'template loss':>14} {'plain loss':>11}")
    for r in results:
        target = r["target"] = TARGETS.get(r["case"])
        r["target_met"] = None if target is None or r["ratio"] is None else r["ratio_ci95"][1] < target
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f} [{r['ratio_ci95'][0]:.3f}, {r['ratio_ci95'][1]:.3f}]"
        plain, losses = ("-" if r["plain_s"] is None else f"{r['plain_s']:.3f}",
                         ["-" if r[key] is None else f"{r[key]:.6f}" for key in ("template_loss", "plain_loss")])
        print(f"{r['case']:<24} {r['template_s']:>11.3f} {plain:>9} {ratio:>22} "
              f"{({None: '-', True: 'met', False: 'not met'}[r['target_met']]):>7} {losses[0]:>14} {losses[1]:>11}")
        for line in details(r):
            print(f"  {line}")
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick}
    print(f"torch {meta['torch']}, {meta['threads']} threads; template/plain times are sums over chunks, "
          "ratios medians of per-round ratios")
    if args.json:
        write_json(Path(args.json), meta, results)


if __name__ == "__main__":
    main()
