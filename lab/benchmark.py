"""Template vs. a hand-written PyTorch loop on identical work, in one process; and time to accuracy (docs/speed.md).

    python lab/benchmark.py --data-dir ../shared/data      # iris, fashion, precision (and gpu on a GPU)
    python lab/benchmark.py --quick                       # small versions, for CI and smoke tests
    python lab/benchmark.py --cases time_to_accuracy --data-dir ../shared/data --seeds 0,1,2
    python lab/benchmark.py --data-dir ../shared/data --json reports/benchmark.json

Cases (groups: iris, fashion, overhead, precision, data, gpu):
  iris_full_batch          text 000's 4-6-3 MLP, 10 000 full-batch SGD updates in chunks of 1 000, vs. the plain loop
  fashion_vs_source_loop   the source recipe in one fit of 180 x 5 steps, text 004's DataLoader loop run between chunks
  fashion_vs_tensor_loop   the same vs. a plain loop fed the same batches from the same tensors
  overhead_batch_16, _64   that comparison at batch 16 and 64: the template's cost per step in ms (not in the default set)
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
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from benchmark_cases import fashion_gpu, fashion_precision, fashion_vs_loop, image_folder_vs_fashion, iris_full_batch, time_to_accuracy
from benchmark_stats import details, write_json

from lightning_models.training.experiments import parse_seeds

TARGETS = {"iris_full_batch": 1.5, "fashion_vs_source_loop": 1.0, "fashion_vs_tensor_loop": 1.05}

CASES: dict[str, Callable[[argparse.Namespace], dict | None]] = {
    "iris_full_batch": iris_full_batch,
    "fashion_vs_source_loop": lambda args: fashion_vs_loop(args, "fashion_vs_source_loop"),
    "fashion_vs_tensor_loop": lambda args: fashion_vs_loop(args, "fashion_vs_tensor_loop"),
    "overhead_batch_16": lambda args: fashion_vs_loop(args, "overhead_batch_16", batch_size=16),
    "overhead_batch_64": lambda args: fashion_vs_loop(args, "overhead_batch_64", batch_size=64),
    "fashion_precision": fashion_precision, "time_to_accuracy": time_to_accuracy,
    "image_folder_vs_fashion": image_folder_vs_fashion, "fashion_gpu": fashion_gpu}
GROUPS = {"iris": ["iris_full_batch"], "fashion": ["fashion_vs_source_loop", "fashion_vs_tensor_loop"],
          "overhead": ["overhead_batch_16", "overhead_batch_64"], "precision": ["fashion_precision"],
          "data": ["image_folder_vs_fashion"], "gpu": ["fashion_gpu"]}


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
