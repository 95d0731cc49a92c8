"""The README's pictures, taken from the TensorBoard event files of the report's runs.

    python lab/reproduce.py --data-dir ../shared/data     # the runs (or any report)
    python lab/pictures.py                                # -> docs/images/*.png

Each picture is the last image a panel logged under its tag in the run of ``reports/RESULTS.json`` (default
recipe, first seed; ``--recipe source``: the source recipes'), resized to at most ``--width`` pixels and
palette-compressed. Nothing is drawn here: what the README shows is what TensorBoard shows.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (file name, experiment, tag): the panels the README describes.
PICTURES = [
    ("fashion_misclassified.png", "fashion_cnn", "test/misclassified"),
    ("fashion_confusion_matrix.png", "fashion_cnn", "test/confusion_matrix"),
    ("xor_raw_decision_surface.png", "xor_logistic_regression", "test/decision_surface"),
    ("xor_quadrant_decision_surface.png", "xor_logistic_regression_quadrant", "test/decision_surface"),
    ("sgd_parameter_path.png", "exp_linear_sgd", "train/parameter_path"),
    ("exp_fit.png", "exp_fit", "test/fitted_curve"),
    ("iris_latent_code.png", "iris_autoencoder", "test/latent_code"),
    ("iris_observed_vs_predicted.png", "iris_linear_regression", "test/observed_vs_predicted"),
]


def last_image(run_dir: Path, tag: str) -> bytes:
    """The encoded PNG of the last step logged under ``tag`` in the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: list[tuple[float, int, bytes]] = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"images": 0})
        events.Reload()
        if tag in events.Tags()["images"]:
            found += [(image.wall_time, image.step, image.encoded_image_string) for image in events.Images(tag)]
    if not found:
        raise LookupError(f"{run_dir}: no image logged under {tag!r}")
    return max(found)[2]


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default=str(ROOT / "reports" / "RESULTS.json"), help="the report whose runs to read")
    parser.add_argument("--recipe", choices=("default", "source"), default="default")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for the PNGs")
    parser.add_argument("--width", type=int, default=560, help="largest width in pixels (default 560)")
    args = parser.parse_args(argv)
    report = Path(args.report)
    if not report.is_file():
        parser.error(f"no report at {report}; run lab/reproduce.py first")
    rows = {row["name"]: row for row in json.loads(report.read_text())["experiments"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    missing = []
    for name, experiment, tag in PICTURES:
        # run folders are recorded relative to where the reproduction ran: the folder holding the report's folder
        run_dirs = [report.resolve().parent.parent / path
                    for path in ((rows.get(experiment) or {}).get(args.recipe) or {}).get("run_dirs", []) if path]
        try:
            if not run_dirs or not run_dirs[0].is_dir():
                raise LookupError(f"no {args.recipe} run of {experiment} in {report} on this machine")
            image = Image.open(io.BytesIO(last_image(run_dirs[0], tag))).convert("RGB")
        except LookupError as error:
            missing.append(f"{name}: {error}")
            continue
        if image.width > args.width:
            image = image.resize((args.width, round(image.height * args.width / image.width)), Image.LANCZOS)
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out / name, format="PNG", optimize=True)
        print(f"{out / name}: {(out / name).stat().st_size / 1024:.0f} KB from {run_dirs[0]} ({tag})")
    for line in missing:
        print(f"skipped {line}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
