"""Run an exported table model with numpy alone: this file imports nothing else, so it can be copied beside the ``.npz``.

    from numpy_forward import load, forward
    y = forward(load("model.npz"), x)   # x: (rows, columns) raw values, categorical columns one-hot (model.json)
"""

from __future__ import annotations

import numpy as np

Layer = tuple[str, tuple[np.ndarray, ...]]


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def quadrant_one_hot(x: np.ndarray, *_: np.ndarray) -> np.ndarray:
    right, up = x[:, 0:1] > 0, x[:, 1:2] > 0
    return np.concatenate([right & up, ~right & up, ~right & ~up, right & ~up], axis=1).astype(x.dtype)


FEATURE_MAPS = {  # the datamodules' feature maps (lightning_models.nets), by class name
    "Powers": lambda x, degree: np.concatenate([x**power for power in range(1, int(degree) + 1)], axis=1),
    "QuadrantOneHot": quadrant_one_hot,
}
LAYERS = {
    **FEATURE_MAPS,
    "linear": lambda x, weight, bias: x @ weight.T.astype(np.float64) + bias.astype(np.float64),
    "standardize": lambda x, mean, std: (x - mean.astype(np.float64)) / std.astype(np.float64),
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x, slope: np.where(x >= 0, x, x * float(slope)),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": softmax,
}


def load(path: str) -> list[Layer]:
    """The layers stored in ``path``: ``(kind, arrays)``, layer i's arrays as ``layer<i>_0``, ``layer<i>_1``..."""
    archive = np.load(path, allow_pickle=False)
    return [(str(kind), tuple(archive[name] for name in sorted(n for n in archive.files if n.startswith(f"layer{i}_"))))
            for i, kind in enumerate(archive["kinds"])]


def forward(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """The model's output for raw inputs ``x`` ``(rows, columns)``, computed in float64."""
    out = np.asarray(x, dtype=np.float64)
    for kind, arrays in layers:
        if kind not in LAYERS:
            raise ValueError(f"unknown layer kind {kind!r} (this numpy_forward.py is older than the export)")
        out = LAYERS[kind](out, *arrays)
    return out
