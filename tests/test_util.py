"""The shared helpers of lightning_models.util: one answer for the spread of one run, class paths, quiet logs."""

import logging
import math

import pytest

from lightning_models.util import format_mean_spread, import_class, mean_spread, quiet_logs


def test_mean_spread_is_the_sample_std_and_unknown_for_one_value():
    mean, spread = mean_spread([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert spread == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert math.isnan(mean_spread([0.5])[1])
    assert format_mean_spread([0.5]) == "0.5000 (n=1)"
    assert format_mean_spread([1.0, 3.0], digits=1) == "2.0 ± 1.4 (n=2)"
    with pytest.raises(ValueError):
        mean_spread([])


def test_import_class_and_its_errors():
    assert import_class("collections.OrderedDict").__name__ == "OrderedDict"
    with pytest.raises(ModuleNotFoundError):
        import_class("no_such_package.Thing")
    with pytest.raises(AttributeError):
        import_class("collections.NoSuchThing")
    with pytest.raises(ValueError):
        import_class("OrderedDict")


def test_quiet_logs_restores_the_levels():
    logger = logging.getLogger("pytorch_lightning")
    before = logger.level
    with quiet_logs(logging.ERROR):
        assert logger.level == logging.ERROR
    assert logger.level == before
