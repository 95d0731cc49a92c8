"""Export the net of a checkpoint to numpy: ``<out>/model.npz`` and a numpy-only ``numpy_forward.py``.

    python scripts/export_numpy.py lightning_logs/exp_fit/version_0/checkpoints/last.ckpt --out export/
    python -c "import sys; sys.path.insert(0, 'export'); from numpy_forward import load, forward; \
               print(forward(load('export/model.npz'), [[0.2]]))"
"""

from __future__ import annotations

import argparse

from lightning_models.checkpoints import load_module
from lightning_models.export import export_net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py")
    parser.add_argument("--out", default="export", help="output folder (default: export/)")
    args = parser.parse_args()
    module = load_module(args.checkpoint)
    path = export_net(module.net, args.out)
    print(f"wrote {path} and {path.parent / 'numpy_forward.py'}")


if __name__ == "__main__":
    main()
