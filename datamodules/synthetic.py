"""Synthetic data of texts 001, 003 and 004: function fitting, a polynomial, 2-D blobs, quadrants, XOR."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch

from datamodules.images import RANK_SEED_STRIDE
from datamodules.tensor import Examples, Split, TensorDataModule, fold_split, order_seed, seed_for_epoch, trainer_state
from lightning_models.checks import check_choice, check_positive
from lightning_models.nets import Powers, QuadrantOneHot


def polynomial_target() -> tuple[torch.Tensor, torch.Tensor]:
    """Text 003's target: ``torch.manual_seed(2020)``; W = randn(4, 1) * 5, b = randn(1) * 5."""
    generator = torch.Generator().manual_seed(2020)
    return torch.randn(4, 1, generator=generator) * 5, torch.randn(1, generator=generator) * 5


def describe_polynomial(weight: torch.Tensor, bias: torch.Tensor) -> str:
    """Text 003's ``poly_desc``: ``y = +6.19 x^1 -4.80 x^2 +7.71 x^3 -2.04 x^4 +4.40``."""
    terms = " ".join(f"{float(w):+.2f} x^{power}" for power, w in enumerate(weight.flatten(), start=1))
    return f"y = {terms} {float(bias.flatten()[0]):+.2f}"


class FreshBatches:
    """``steps`` fresh batches an epoch (text 001), drawn from ``(seed + rank * RANK_SEED_STRIDE, epoch)``."""

    def __init__(self, sample: Callable[[int, torch.Generator], Examples], batch_size: int, steps: int, seed: int,
                 device: torch.device, epoch: Callable[[], int] | None = None, rank: int = 0) -> None:
        self.sample, self.batch_size, self.steps, self.device, self.rank = sample, batch_size, steps, device, rank
        self.seed, self.epoch, self.generator = seed, epoch or itertools.count().__next__, torch.Generator(device=device)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Examples]:
        seed_for_epoch(self.generator, self.seed + RANK_SEED_STRIDE * self.rank, self.epoch())
        for _ in range(self.steps):
            inputs, targets = self.sample(self.batch_size, self.generator)
            yield inputs.to(self.device), targets.to(self.device)


class FunctionDataModule(TensorDataModule):
    """Regression on ``exp`` (text 001) or text 003's polynomial, a fresh training batch every step."""

    why_no_folds = "its training points are freshly sampled every step, so there is no fixed set of rows to divide into folds."

    def __init__(self, function: Literal["exp", "polynomial"] = "exp", batch_size: int = 100, steps_per_epoch: int = 100,
                 val_size: int = 200, seed: int = 0, predict_split: Split = "test") -> None:
        super().__init__(batch_size, False, seed, predict_split)
        check_choice("function", function, ("exp", "polynomial"))
        check_positive("steps_per_epoch", steps_per_epoch, integer=True)
        check_positive("val_size", val_size, integer=True)
        self.function, self.steps_per_epoch, self.val_size = function, steps_per_epoch, val_size
        self.weight, self.bias = polynomial_target()
        self.target_copies: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.num_features, self.num_outputs, self.feature_names, self.output_names = 4 if function == "polynomial" else 1, 1, ["x"], ["y"]
        self.feature_map = Powers(4) if function == "polynomial" else None

    def points(self, x: torch.Tensor) -> Examples:
        inputs = self.to_features(x.unsqueeze(1))
        if self.function == "exp":
            return inputs, torch.exp(inputs)
        if x.device not in self.target_copies:  # one copy per device, not per batch
            self.target_copies[x.device] = (self.weight.to(x.device), self.bias.to(x.device))
        weight, bias = self.target_copies[x.device]
        return inputs, inputs @ weight + bias

    def draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return (torch.rand if self.function == "exp" else torch.randn)(count, generator=generator, device=generator.device)

    def sample(self, count: int, generator: torch.Generator) -> Examples:
        return self.points(self.draw(count, generator))

    def load_splits(self) -> dict[str, Examples]:
        val, test = (self.draw(self.val_size, torch.Generator().manual_seed(self.seed + i)) for i in (1, 2))
        points = {"val": val, "test": torch.linspace(0, 1, 100) if self.function == "exp" else test}  # text 001's test points
        splits = {name: (x.unsqueeze(1), self.points(x)[1]) for name, x in points.items()}
        return {"train": splits["val"], **splits}  # training batches are drawn fresh

    def train_dataloader(self) -> FreshBatches:
        epoch, rank, _ = trainer_state(self, True)
        return FreshBatches(self.sample, self.batch_size, self.steps_per_epoch, order_seed(self), self.device, epoch, rank)

    def describe_target(self) -> str:
        return describe_polynomial(self.weight, self.bias) if self.function == "polynomial" else "y = e^x"


class PlaneDataModule(TensorDataModule):
    """Two-class points in the plane (texts 003, 004): ``blobs``, ``quadrants`` or ``xor``; fixed splits."""

    def __init__(self, dataset: Literal["blobs", "quadrants", "xor"] = "blobs", features: Literal["raw", "quadrant"] = "raw",
                 points_per_class: int = 500, batch_size: int | None = None, standardize: bool = False, seed: int = 42,
                 predict_split: Split = "test", fold: int | None = None, folds: int = 5) -> None:
        super().__init__(batch_size, standardize, seed, predict_split, fold, folds)
        check_choice("dataset", dataset, ("blobs", "quadrants", "xor"))
        check_choice("features", features, ("raw", "quadrant"))
        check_positive("points_per_class", points_per_class, integer=True)
        self.dataset, self.features, self.points_per_class = dataset, features, points_per_class
        self.class_names, self.num_features, self.num_outputs = ["negative", "positive"], 4 if features == "quadrant" else 2, 2
        self.feature_names, self.feature_map = ["x1", "x2"], QuadrantOneHot() if features == "quadrant" else None

    def sample_points(self, seed: int) -> Examples:
        """Points and labels as the texts draw them after ``np.random.seed(seed)``."""
        generator = np.random.RandomState(seed)
        if self.dataset == "blobs":
            n = self.points_per_class
            class0 = generator.multivariate_normal([0.0, 0.0], np.eye(2), n)
            class1 = generator.multivariate_normal([2.0, 2.0], np.eye(2), n)
            points, labels = np.vstack([class0, class1]), np.repeat([0, 1], n)
        else:
            points = generator.randn(200, 2) + 3 * np.tile([[1, 1], [-1, 1], [-1, -1], [1, -1]], (50, 1))
            labels = points[:, 0] > 0 if self.dataset == "quadrants" else np.logical_xor(points[:, 0] > 0, points[:, 1] > 0)
        return torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)

    def load_splits(self) -> dict[str, Examples]:
        self.plane = {name: self.sample_points(self.seed + 1000 * i) for i, name in enumerate(("train", "val", "test"))}
        if self.fold is not None:
            points, labels = (torch.cat([self.plane["train"][i], self.plane["val"][i]]) for i in (0, 1))
            train, val = fold_split(np.arange(len(labels)), labels.numpy(), self.fold, self.folds, self.seed)
            self.plane.update(train=(points[train], labels[train]), val=(points[val], labels[val]))
        return dict(self.plane)

    def plane_points(self, split: str = "test") -> Examples:
        if not self.splits:
            self.setup()
        return self.plane[split]
