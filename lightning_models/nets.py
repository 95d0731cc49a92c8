"""Plain ``nn.Module`` architectures. No Lightning here: every net is usable and testable on its own.

Every net's constructor starts with ``(in_features, out_features)``: the task modules take a net as a
callable ``net(num_features, num_outputs)`` (class_path + init_args in a config), so any class with
that signature, the user's own included, can be injected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_models.checks import ConfigError, check_choice, check_positive

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
               "identity": nn.Identity}


def make_activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    """The activation called ``name``; ``negative_slope`` is used by ``leaky_relu`` only."""
    check_choice("activation", name, ACTIVATIONS)
    return nn.LeakyReLU(negative_slope) if name == "leaky_relu" else ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Fully connected net: ``in_features -> hidden_sizes... -> out_features``.

    With no hidden layers it is a linear model. ``activation`` follows every hidden layer;
    ``output_activation`` (default none) follows the last layer, as in text 001's net, which
    applies leaky ReLU to its output too.

    Example: ``MLP(4, 3, hidden_sizes=[6], activation="sigmoid")`` is text 000's 4-6-3 net.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: Sequence[int] = (),
        activation: str = "relu",
        negative_slope: float = 0.01,
        output_activation: str = "identity",
    ) -> None:
        sizes = [in_features, *hidden_sizes, out_features]
        check_positive("in_features", in_features, integer=True)
        for size in sizes[1:-1]:
            check_positive("hidden_sizes", size, integer=True)
        check_positive("out_features", out_features, integer=True)
        layers: list[nn.Module] = []
        activations = [*[activation] * (len(sizes) - 2), output_activation]
        for fan_in, fan_out, name in zip(sizes[:-1], sizes[1:], activations):
            layers.append(nn.Linear(fan_in, fan_out))
            if name != "identity":
                layers.append(make_activation(name, negative_slope))
        super().__init__(*layers)


class AutoEncoder(nn.Module):
    """Encoder ``in_features -> hidden_sizes -> latent_size`` and its mirror image as decoder.

    ``latent_activation`` squashes the code (text 000 uses a sigmoid); ``encode`` returns it.

    Example: ``AutoEncoder(4, 4, latent_size=2, latent_activation="sigmoid")`` is text 000's 4-2-4 net.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        latent_size: int = 2,
        hidden_sizes: Sequence[int] = (),
        activation: str = "relu",
        latent_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.encoder = MLP(in_features, latent_size, hidden_sizes, activation, output_activation=latent_activation)
        self.decoder = MLP(latent_size, out_features, list(reversed(hidden_sizes)), activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class FashionCNN(nn.Module):
    """Text 004's Fashion-MNIST CNN for 28x28 images (``in_features`` = channels x 784).

    [conv 1->32 3x3 pad 1, BatchNorm, ReLU, maxpool 2] -> [conv 32->64 3x3, BatchNorm, ReLU,
    maxpool 2] -> flatten 2304 -> Linear 600 -> dropout -> Linear 120 -> ReLU -> Linear classes.
    The text's ``Dropout2d`` on a flat tensor is deprecated; plain dropout does what it meant.

    ``channels_last`` keeps the convolution weights and inputs in channels-last memory format (same
    maths, other float rounding) because CPU convolutions run faster that way (docs/speed.md); ``False`` gives
    PyTorch's default layout.
    """

    def __init__(self, in_features: int = 28 * 28, out_features: int = 10, dropout: float = 0.25,
                 channels_last: bool = True) -> None:
        super().__init__()
        check_positive("out_features", out_features, integer=True)
        in_channels, rest = divmod(in_features, 28 * 28)
        if rest or not in_channels:
            raise ConfigError(f"in_features={in_features!r}: FashionCNN takes 28x28 images, so a multiple of 784.")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 6 * 6, 600),
            nn.Dropout(dropout),
            nn.Linear(600, 120),
            nn.ReLU(),
            nn.Linear(120, out_features),
        )
        self.channels_last = channels_last
        if channels_last:  # parameters copied in later (load_state_dict, .to(device)) keep this layout
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x))
