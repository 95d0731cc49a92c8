"""Export an MLP-type net (Linear layers and activations, in order) to a numpy ``.npz``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from torch import nn

from lightning_models import numpy_forward

ACTIVATION_NAMES = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}


def export_net(net: nn.Module, out_dir: str | Path, name: str = "model") -> Path:
    """Write ``<out_dir>/<name>.npz`` and ``numpy_forward.py`` beside it; returns the ``.npz`` path.

    Supports nets made of Linear, ReLU, LeakyReLU, Sigmoid, Tanh and Identity layers applied in
    the order they are registered (``nets.MLP``, ``nets.AutoEncoder``); anything else is refused.
    """
    arrays: dict[str, np.ndarray] = {}
    kinds: list[str] = []
    for layer in net.modules():
        if list(layer.children()) or isinstance(layer, nn.Identity):
            continue  # containers and no-ops
        index = len(kinds)
        if isinstance(layer, nn.Linear):
            kinds.append("linear")
            arrays[f"weight_{index}"] = layer.weight.detach().cpu().numpy()
            arrays[f"bias_{index}"] = layer.bias.detach().cpu().numpy()
        elif type(layer) in ACTIVATION_NAMES:
            kinds.append(ACTIVATION_NAMES[type(layer)])
            arrays[f"slope_{index}"] = np.array(getattr(layer, "negative_slope", 0.0))
        else:
            raise TypeError(f"cannot export layer {layer!r}: only Linear layers and "
                            f"{sorted(ACTIVATION_NAMES.values())} activations are supported")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.npz"
    np.savez(path, kinds=np.array(kinds), **arrays)
    shutil.copyfile(numpy_forward.__file__, out_dir / "numpy_forward.py")
    return path
