"""Standardisation statistics fitted on the training rows that stay safe for the other rows: a column that does not
vary in training gets scale 1, as in scikit-learn's ``StandardScaler``."""

from __future__ import annotations

import torch
from pytorch_lightning.utilities import rank_zero_warn

from lightning_models.checks import ConfigError


def constant_columns(values: torch.Tensor) -> torch.Tensor:
    """Which columns of ``values`` (rows, columns) do not vary, allowing for rounding: scikit-learn's test for the
    columns ``StandardScaler`` leaves unscaled (variance within rounding of the mean's magnitude), in float64."""
    x = values.double()
    count, eps = len(x), torch.finfo(torch.float64).eps
    mean, variance = x.mean(dim=0), x.var(dim=0, correction=0)
    return variance <= count * eps * variance + (count * mean.abs() * eps) ** 2


def fit_scale(values: torch.Tensor, names: list[str], owner: str, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` of each column of the training rows ``values`` (the sample std, n - 1). A column that does not
    vary there gets scale 1 and a warning naming it: dividing by its (near) zero spread would blow any other value it
    takes in validation, test or new rows up to enormous numbers."""
    std = values.std(dim=0)
    constant = constant_columns(values) | (std == 0) | ~torch.isfinite(std)  # std is NaN for a single row
    if constant.any():
        which = ", ".join(name for name, same in zip(names, constant.tolist()) if same)
        rank_zero_warn(f"{owner}: {what} column(s) {which} do not vary over the training rows; left unscaled (scale 1).")
    return values.mean(dim=0), torch.where(constant, torch.ones_like(std), std)


def check_finite(owner: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], after: str = "") -> None:
    """A ConfigError naming the first non-finite input of any split (``after``: the step that made it)."""
    for name, (inputs, _) in splits.items():
        if inputs.is_floating_point() and len(bad := (~torch.isfinite(inputs)).nonzero()):
            if after:
                raise ConfigError(f"{owner}: {after} the {name} inputs overflows float32 (first at row, column "
                                  f"{bad[0].tolist()}); rescale that column (e.g. other units).")
            raise ConfigError(f"{owner}: the {name} inputs contain NaN or inf (first at row, column "
                              f"{bad[0].tolist()}); clean or impute the data before training.")
