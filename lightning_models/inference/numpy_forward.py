"""Run an exported table model with numpy alone (text 001: "a model that runs without any ML library").

This file imports nothing but numpy so it can be copied next to an exported ``.npz`` and used anywhere::

    from numpy_forward import load, forward
    layers = load("model.npz")
    y = forward(layers, x)          # x: (rows, columns) raw values, categorical columns one-hot (model.json)

The layers run in order: the datamodule's feature map (``powers_1_to_4``, ``quadrant_one_hot``), standardisation,
Linear layers and activations, then the output's softmax or sigmoid. ``python scripts/export.py CKPT --format numpy``
writes them.
"""

from __future__ import annotations

import numpy as np

Layer = tuple[str, tuple[np.ndarray, ...]]


def load(path: str) -> list[Layer]:
    """The layers stored in ``path``: ``(kind, arrays)``; layer i's arrays are stored as ``layer<i>_0``, ``layer<i>_1``..."""
    archive = np.load(path, allow_pickle=False)
    layers: list[Layer] = []
    for index, kind in enumerate(archive["kinds"]):
        count = sum(name.startswith(f"layer{index}_") for name in archive.files)
        layers.append((str(kind), tuple(archive[f"layer{index}_{k}"] for k in range(count))))
    return layers


def quadrant_one_hot(x: np.ndarray) -> np.ndarray:
    right, up = x[:, 0:1] > 0, x[:, 1:2] > 0
    return np.concatenate([right & up, ~right & up, ~right & ~up, right & ~up], axis=1).astype(x.dtype)


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def apply(kind: str, arrays: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    if kind == "linear":
        return x @ arrays[0].T.astype(np.float64) + arrays[1].astype(np.float64)
    if kind == "standardize":
        return (x - arrays[0].astype(np.float64)) / arrays[1].astype(np.float64)
    if kind == "powers_1_to_4":
        return np.concatenate([x**power for power in range(1, 5)], axis=1)
    if kind == "quadrant_one_hot":
        return quadrant_one_hot(x)
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "leaky_relu":
        return np.where(x >= 0, x, x * float(arrays[0]))
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if kind == "tanh":
        return np.tanh(x)
    if kind == "softmax":
        return softmax(x)
    raise ValueError(f"unknown layer kind {kind!r} (this numpy_forward.py is older than the export)")


def forward(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """The model's output for raw inputs ``x`` ``(rows, columns)``, computed in float64."""
    out = np.asarray(x, dtype=np.float64)
    for kind, arrays in layers:
        out = apply(kind, arrays, out)
    return out
