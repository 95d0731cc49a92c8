"""Run an exported MLP-type net with numpy alone (text 001: "a model that runs without any ML library").

This file imports nothing but numpy so it can be copied next to an exported ``.npz`` and used
anywhere::

    from numpy_forward import load, forward
    params = load("model.npz")
    y = forward(params, x)          # x: (rows, features) float array
"""

from __future__ import annotations

import numpy as np


def load(path: str) -> list[tuple]:
    """The layer list stored by ``scripts/export_numpy.py``: ("linear", W, b) or ("activation", name, slope)."""
    archive = np.load(path, allow_pickle=False)
    layers: list[tuple] = []
    for index, kind in enumerate(archive["kinds"]):
        if kind == "linear":
            layers.append(("linear", archive[f"weight_{index}"], archive[f"bias_{index}"]))
        else:
            layers.append(("activation", str(kind), float(archive[f"slope_{index}"])))
    return layers


def activate(name: str, x: np.ndarray, slope: float) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0)
    if name == "leaky_relu":
        return np.where(x >= 0, x, x * slope)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    raise ValueError(f"unknown activation {name!r}")


def forward(layers: list[tuple], x: np.ndarray) -> np.ndarray:
    """The net's output for inputs ``x``, computed in float64."""
    out = np.asarray(x, dtype=np.float64)
    for layer in layers:
        if layer[0] == "linear":
            out = out @ layer[1].T.astype(np.float64) + layer[2].astype(np.float64)
        else:
            out = activate(layer[1], out, layer[2])
    return out
