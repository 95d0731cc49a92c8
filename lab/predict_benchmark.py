"""``scripts/predict.py`` against a plain ``model(x)`` loop on the same Fashion-MNIST test images, in one run.

    python lab/predict_benchmark.py --data-dir ../shared/data                  # a quickly trained FashionCNN checkpoint
    python lab/predict_benchmark.py --data-dir ../shared/data --checkpoint CKPT --folder 60000

The timed work is the same 10,000 uint8 test images both ways: the plain loop normalises each batch and runs
``module(x).softmax``; the template's path is what ``scripts/predict.py`` does with a ``.npy`` input (read, encode,
``PredictionNet``, CSV rows written). Runs alternate, ``--repeats`` each; the medians and their ratio are printed.
``--folder N`` also writes N training images as PNG files into a temporary folder and runs ``scripts/predict.py`` on it
as a process: its images/s and peak memory (streamed a batch at a time, so memory should not grow with N).
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def quick_checkpoint(data_dir: str, folder: Path) -> str:
    from lightning_models import run

    result = run(ROOT / "configs" / "fashion_cnn.yaml", f"--data.data_dir={data_dir}", "--trainer.max_epochs=1",
                 "--trainer.limit_train_batches=20", "--trainer.limit_val_batches=5", "--trainer.limit_test_batches=5",
                 "--trainer.precision=32-true", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={folder}",
                 "--trainer.logger=false", "--trainer.callbacks=[]")
    return result.checkpoints["best"] or result.checkpoints["last"]


def plain_loop(module: torch.nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
    from datamodules.fashion_mnist import MEAN, STD

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].unsqueeze(1).float().div(255).sub(MEAN).div(STD)
            outputs.append(module(x).softmax(-1).numpy())
    return np.concatenate(outputs)


def template_path(predictor, images: np.ndarray, batch_size: int) -> str:
    from lightning_models.inference.predictor import write_predictions

    handle = io.StringIO()
    write_predictions(predictor, images, handle, batch_size, progress=False)
    return handle.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data", help="a folder holding FashionMNIST/raw/")
    parser.add_argument("--checkpoint", default=None, help="a FashionCNN checkpoint (default: trained here for a few batches)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=int, default=0, help="also predict a folder of this many PNG files (0: skip)")
    args = parser.parse_args()
    from torchvision.datasets import FashionMNIST

    from datamodules.fashion_mnist import prepare_raw_files
    from lightning_models import load

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or quick_checkpoint(args.data_dir, Path(scratch))
        predictor = load(checkpoint)
        test = FashionMNIST(str(prepare_raw_files(Path(args.data_dir), download=False)), train=False).data
        plain, ours = [], []
        expected = plain_loop(predictor.module, test, args.batch_size)
        written = template_path(predictor, test.numpy(), args.batch_size)
        rows = [line.split(",") for line in written.splitlines()[1:]]
        difference = np.abs(np.array([[float(cell) for cell in row[3:]] for row in rows]) - expected).max()
        for _ in range(args.repeats):  # interleaved: the machine's drift hits both alike
            started = time.perf_counter()
            plain_loop(predictor.module, test, args.batch_size)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            template_path(predictor, test.numpy(), args.batch_size)
            ours.append(time.perf_counter() - started)
        count = len(test)
        print(f"{count} test images, batch {args.batch_size}, {torch.get_num_threads()} threads, {args.repeats} runs each; "
              f"max |difference| of the probabilities {difference:.2g}")
        print(f"plain model(x) loop: {statistics.median(plain):.3f} s ({count / statistics.median(plain):,.0f} images/s)")
        print(f"predict.py path:     {statistics.median(ours):.3f} s ({count / statistics.median(ours):,.0f} images/s)")
        print(f"ratio (predict.py / plain): {statistics.median(ours) / statistics.median(plain):.3f} "
              f"(per run: {', '.join(f'{o / p:.3f}' for o, p in zip(ours, plain))})")
        if args.folder:
            folder_run(checkpoint, args.data_dir, args.folder, Path(scratch))


def folder_run(checkpoint: str, data_dir: str, count: int, scratch: Path) -> None:
    from PIL import Image
    from torchvision.datasets import FashionMNIST

    folder = scratch / "images"
    folder.mkdir()
    from datamodules.fashion_mnist import prepare_raw_files

    train = FashionMNIST(str(prepare_raw_files(Path(data_dir), download=False)), train=True).data[:count].numpy()
    for index, pixels in enumerate(train):
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), checkpoint, str(folder), "--out",
                           str(scratch / "folder.csv"), "--no-progress"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines = sum(1 for _ in open(scratch / "folder.csv")) - 1
    print(f"folder of {count} PNG files: {lines} rows in {seconds:.1f} s ({count / seconds:,.0f} images/s, process start "
          f"included), peak memory of the predict.py process {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
