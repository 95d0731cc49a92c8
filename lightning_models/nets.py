"""Plain ``nn.Module`` nets, built as ``net(in_features, out_features, ...)``, and the feature maps of the datamodules."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lightning_models.checks import ConfigError, check_choice, check_positive

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}


def make_activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    """The activation called ``name``; ``negative_slope`` is ``leaky_relu``'s."""
    check_choice("activation", name, ACTIVATIONS)
    return nn.LeakyReLU(negative_slope) if name == "leaky_relu" else ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """``in_features -> hidden_sizes... -> out_features``: ``MLP(4, 3, [6], "sigmoid")`` is text 000's net."""

    def __init__(self, in_features: int, out_features: int, hidden_sizes: Sequence[int] = (), activation: str = "relu",
                 negative_slope: float = 0.01, output_activation: str = "identity") -> None:
        sizes = [in_features, *hidden_sizes, out_features]
        for name, size in [("in_features", in_features), *[("hidden_sizes", size) for size in hidden_sizes],
                           ("out_features", out_features)]:
            check_positive(name, size, integer=True)
        layers: list[nn.Module] = []
        for fan_in, fan_out, name in zip(sizes[:-1], sizes[1:], [*[activation] * (len(sizes) - 2), output_activation]):
            layers.append(nn.Linear(fan_in, fan_out))
            if name != "identity":
                layers.append(make_activation(name, negative_slope))
        super().__init__(*layers)


class AutoEncoder(nn.Module):
    """Encoder ``in_features -> hidden_sizes -> latent_size`` and its mirror image."""

    def __init__(self, in_features: int, out_features: int, latent_size: int = 2, hidden_sizes: Sequence[int] = (),
                 activation: str = "relu", latent_activation: str = "sigmoid") -> None:
        super().__init__()
        self.encoder = MLP(in_features, latent_size, hidden_sizes, activation, output_activation=latent_activation)
        self.decoder = MLP(latent_size, out_features, list(reversed(hidden_sizes)), activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class FashionCNN(nn.Module):
    """Text 004's CNN for 28x28 images; ``channels_last``: faster CPU convolutions (docs/speed.md)."""

    def __init__(self, in_features: int = 28 * 28, out_features: int = 10, dropout: float = 0.25,
                 channels_last: bool = True) -> None:
        super().__init__()
        check_positive("out_features", out_features, integer=True)
        in_channels, rest = divmod(in_features, 28 * 28)
        if rest or not in_channels:
            raise ConfigError(f"in_features={in_features!r}: FashionCNN takes 28x28 images, so a multiple of 784.")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 6 * 6, 600), nn.Dropout(dropout), nn.Linear(600, 120),
                                        nn.ReLU(), nn.Linear(120, out_features))
        self.channels_last = channels_last
        if channels_last:  # parameters copied in later (load_state_dict, .to(device)) keep this layout
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x))


class FeatureMap(nn.Module):
    """A fixed map from a table's raw columns to the net's inputs, applied before standardising."""

    def spec(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}``: how a checkpoint names this map."""
        parameters = list(inspect.signature(type(self).__init__).parameters.values())[1:]
        init_args = {p.name: getattr(self, p.name) for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}


class Powers(FeatureMap):
    """Powers 1 to ``degree`` of every column: text 003's polynomial features."""

    def __init__(self, degree: int = 4) -> None:
        super().__init__()
        check_positive("degree", degree, integer=True)
        self.degree = degree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x**power for power in range(1, self.degree + 1)], dim=1)


class QuadrantOneHot(FeatureMap):
    """Text 004's XOR features: the one-hot quadrant of ``(x1, x2)``: (+, +), (-, +), (-, -), (+, -)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right, up = x[:, 0] > 0, x[:, 1] > 0
        return torch.stack([right & up, ~right & up, ~right & ~up, right & ~up], dim=1).to(x.dtype)
