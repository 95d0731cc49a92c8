"""Template vs. a hand-written PyTorch loop on identical work, in one process and one run.

    python scripts/benchmark.py                               # all cases, 3 repetitions, median
    python scripts/benchmark.py --quick                       # small versions, for CI and smoke tests
    python scripts/benchmark.py --data-dir ../shared/data --json reports/benchmark.json

Cases:
  iris_full_batch          text 000's 4-6-3 MLP, 10 000 full-batch SGD updates
                           (configs/source/iris_mlp_classifier.yaml) vs. the plain loop.
  fashion_vs_source_loop   one epoch of the source recipe (FashionCNN, Adam 1e-3, batch 64): the
                           template's tensor path vs. text 004's loop (torchvision dataset, ToTensor, DataLoader).
  fashion_vs_tensor_loop   the same epoch vs. a plain loop fed the same batches from the same tensors.
  fashion_gpu              on a GPU only: epoch time and samples/s of the template's GPU-resident path.
Each case starts both sides from the same weights; the final losses show the same work was done.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from datamodules.fashion_mnist import ImageBatches
from lightning_models.cli import instantiate

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false",
         "--last_checkpoint=false"]


def timed(function: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    loss = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss


def iris_full_batch(updates: int) -> dict:
    return compare("iris_full_batch", f"{updates} full-batch updates, 4-6-3 MLP", lambda: iris_sides(updates))


def iris_sides(updates: int) -> tuple[Callable[[], float], Callable[[], float]]:
    epochs = updates // 100  # the source config runs 100 updates per Lightning step (updates_per_step)
    model, datamodule, trainer = instantiate(
        ROOT / "configs" / "source" / "iris_mlp_classifier.yaml", f"--trainer.max_epochs={epochs}",
        "--trainer.accelerator=cpu", *QUIET,
    )
    plain = type(model.net)(4, 3, [6], "sigmoid")
    plain.load_state_dict(model.net.state_dict())
    datamodule.setup("fit")
    x, y = datamodule.splits["train"]
    target = F.one_hot(y, 3).float()

    def template() -> float:
        trainer.fit(model, datamodule=datamodule)
        with torch.no_grad():
            return F.mse_loss(model(x), target).item()

    def plain_loop() -> float:
        optimizer = torch.optim.SGD(plain.parameters(), lr=0.01)
        for _ in range(updates):
            loss = F.mse_loss(torch.softmax(plain(x), dim=1), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return F.mse_loss(torch.softmax(plain(x), dim=1), target).item()

    return template, plain_loop


def fashion_setup(data_dir: str, batches: int | None, accelerator: str = "cpu") -> tuple:
    limit = [f"--trainer.limit_train_batches={batches}"] if batches else []
    model, datamodule, trainer = instantiate(
        ROOT / "configs" / "source" / "fashion_cnn.yaml", "--trainer.max_epochs=1", f"--data.data_dir={data_dir}",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        f"--trainer.accelerator={accelerator}", *limit, *QUIET,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return model, datamodule, trainer


def run_template(model: pl.LightningModule, datamodule: pl.LightningDataModule, trainer: pl.Trainer) -> Callable[[], float]:
    def template() -> float:
        trainer.fit(model, datamodule=datamodule)
        return float(trainer.callback_metrics["train/loss"])

    return template


def plain_epoch(net: torch.nn.Module, batches: Iterable, device: torch.device, limit: int | None) -> float:
    """Text 004's training loop; returns the mean loss over the epoch."""
    net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    total, count = torch.zeros((), device=device), 0
    for index, (images, labels) in enumerate(batches):
        if limit is not None and index >= limit:
            break
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(labels)
        count += len(labels)
    return (total / count).item()


def source_loop_sides(data_dir: str, batches: int | None) -> tuple[Callable[[], float], Callable[[], float]]:
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    model, datamodule, trainer = fashion_setup(data_dir, batches)
    source_net = type(model.net)()
    source_net.load_state_dict(model.net.state_dict())
    dataset = FashionMNIST(str(datamodule.root), train=True, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    return run_template(model, datamodule, trainer), lambda: plain_epoch(source_net, loader, torch.device("cpu"), batches)


def tensor_loop_sides(data_dir: str, batches: int | None) -> tuple[Callable[[], float], Callable[[], float]]:
    model, datamodule, trainer = fashion_setup(data_dir, batches)
    tensor_net = type(model.net)()
    tensor_net.load_state_dict(model.net.state_dict())
    images, labels = datamodule.splits["train"]  # the same tensors, seed and order as the template's batches
    same_batches = ImageBatches(images, labels, datamodule.batch_size, True, datamodule.seed, transform=datamodule.to_inputs)
    return run_template(model, datamodule, trainer), lambda: plain_epoch(tensor_net, same_batches, torch.device("cpu"), batches)


def fashion_vs_source_loop(data_dir: str, batches: int | None) -> dict:
    return compare("fashion_vs_source_loop", "1 epoch, batch 64, source recipe", lambda: source_loop_sides(data_dir, batches))


def fashion_vs_tensor_loop(data_dir: str, batches: int | None) -> dict:
    return compare("fashion_vs_tensor_loop", "1 epoch, batch 64, same in-memory batches",
                   lambda: tensor_loop_sides(data_dir, batches))


def fashion_gpu(data_dir: str, batches: int | None) -> dict | None:
    if not torch.cuda.is_available():
        print("fashion_gpu: skipped (no GPU)")
        return None
    model, datamodule, trainer = fashion_setup(data_dir, batches, accelerator="gpu")
    seconds, loss = timed(run_template(model, datamodule, trainer))
    samples = trainer.num_training_batches * datamodule.batch_size
    return {"case": "fashion_gpu", "work": "1 epoch on the GPU-resident path", "template_s": seconds, "plain_s": None,
            "ratio": None, "template_loss": loss, "plain_loss": None, "samples_per_s": samples / seconds,
            "device": torch.cuda.get_device_name()}


REPEATS = 1
CASES = {"iris_full_batch": iris_full_batch, "fashion_vs_source_loop": fashion_vs_source_loop,
         "fashion_vs_tensor_loop": fashion_vs_tensor_loop, "fashion_gpu": fashion_gpu}
GROUPS = {"iris": ["iris_full_batch"], "fashion": ["fashion_vs_source_loop", "fashion_vs_tensor_loop"], "gpu": ["fashion_gpu"]}


def selected_cases(text: str, parser: argparse.ArgumentParser) -> list[str]:
    chosen: list[str] = []
    for name in filter(None, (part.strip() for part in text.split(","))):
        if name not in CASES and name not in GROUPS:
            parser.error(f"--cases: unknown case {name!r}; choose from {', '.join([*CASES, *GROUPS])}")
        chosen += [case for case in GROUPS.get(name, [name]) if case not in chosen]
    return chosen


def compare(case: str, work: str, sides: Callable[[], tuple[Callable[[], float], Callable[[], float]]]) -> dict:
    """Times both sides ``REPEATS`` times, each time from fresh copies of the same starting point
    (``sides()`` builds them, untimed).

    The order alternates (template first, then plain first, ...): the speed of 2 shared cores
    drifts by 10-25% within minutes, and a fixed order would charge the drift to one side. The
    ratio is the median of the per-repetition ratios; the times are medians too.
    """
    times: dict[str, list[float]] = {"template": [], "plain": []}
    losses: dict[str, float] = {}
    for repeat in range(REPEATS):
        built = dict(zip(("template", "plain"), sides()))
        for name in ("template", "plain") if repeat % 2 == 0 else ("plain", "template"):
            torch.manual_seed(0)  # the same dropout masks on both sides
            seconds, losses[name] = timed(built[name])
            times[name].append(seconds)
    ratios = [template / plain for template, plain in zip(times["template"], times["plain"])]
    return {"case": case, "work": work, "template_s": statistics.median(times["template"]),
            "plain_s": statistics.median(times["plain"]), "ratio": statistics.median(ratios),
            "template_loss": losses["template"], "plain_loss": losses["plain"],
            "template_times": times["template"], "plain_times": times["plain"], "ratios": ratios}


def main() -> None:
    global REPEATS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4,
                        help="repetitions per case, alternating which side runs first; medians are reported")
    parser.add_argument("--quick", action="store_true", help="1 000 iris updates, 50 Fashion-MNIST batches, 1 repetition")
    parser.add_argument("--data-dir", default=None, help="folder holding FashionMNIST/raw/ (Fashion cases skipped without it)")
    parser.add_argument("--cases", default="iris,fashion,gpu",
                        help=f"comma-separated case names ({', '.join(CASES)}) or groups ({', '.join(GROUPS)})")
    parser.add_argument("--json", default=None, help="write one record per case to this file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give at least 1")
    REPEATS = 1 if args.quick else args.repeats
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)
    cases = selected_cases(args.cases, parser)
    results: list[dict] = []
    batches = 50 if args.quick else None
    for case in cases:
        if case == "iris_full_batch":
            results.append(iris_full_batch(1_000 if args.quick else 10_000))
        elif not args.data_dir:
            print(f"{case}: skipped (give --data-dir, the folder holding FashionMNIST/raw/)")
        elif (record := CASES[case](args.data_dir, batches)) is not None:
            results.append(record)
    print(f"\n{'case':<24} {'template s':>11} {'plain s':>9} {'ratio':>6} {'template loss':>14} {'plain loss':>11}")
    for r in results:
        plain = "-" if r["plain_s"] is None else f"{r['plain_s']:.3f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        plain_loss = "-" if r["plain_loss"] is None else f"{r['plain_loss']:.6f}"
        print(f"{r['case']:<24} {r['template_s']:>11.3f} {plain:>9} {ratio:>6} {r['template_loss']:>14.6f} {plain_loss:>11}")
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick, "repeats": REPEATS}
    print(f"torch {meta['torch']}, {meta['threads']} threads, repeats {REPEATS} (median)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "cases": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
