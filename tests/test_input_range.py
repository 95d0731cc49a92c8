"""Inputs are checked against float32, the dtype they are cast to: a number finite in float64 but beyond float32's range
(1e39, 1e308) would become inf and give NaN answers; it is refused in one line naming the row and column, in training
(tests/test_csv_data.py) and in prediction, from Python and from scripts/predict.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_models import load, run
from lightning_models.inference.prediction_inputs import PredictionInputError
from tests.conftest import CONFIGS, ROOT
from tests.helpers import run_script, write_csv

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.precision=32-true",
         "--trainer.callbacks=[]", "--trainer.logger=false", "--trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A CSV regressor of y on a number x and a colour, trained for one epoch."""
    folder = tmp_path_factory.mktemp("range")
    generator = np.random.default_rng(0)
    rows = [[float(x), colour, 2 * x] for x, colour in zip(generator.normal(size=60), generator.choice(["red", "blue"], 60))]
    table = write_csv(folder / "table.csv", ["x", "colour", "y"], rows)
    result = run(CONFIGS / "examples" / "csv_regression.yaml", f"--data.init_args.path={table}",
                 "--data.init_args.categorical=[colour]", f"--trainer.default_root_dir={folder}", *QUIET)
    return Path(result.checkpoints["best"] or result.checkpoints["last"])


@pytest.mark.parametrize("value", ["1e39", -1e39, 1e308, "3.5e38"])
def test_a_value_beyond_float32_is_refused_naming_row_and_column(checkpoint, value):
    predictor = load(checkpoint)
    fine = predictor.predict([{"x": 1.0, "colour": "red"}, {"x": 3.0e38 / 1e30, "colour": "blue"}])
    assert np.isfinite(fine.outputs).all()  # large but representable values are taken
    with pytest.raises(PredictionInputError) as error:
        predictor.predict([{"x": 0.5, "colour": "red"}, {"x": value, "colour": "blue"}])
    assert str(error.value) == (f"row 1, column 'x': {value!r} is beyond float32's range (±3.402823e+38), the dtype the "
                                "model computes in.")


def test_an_array_beyond_float32_is_refused_naming_row_and_column(checkpoint):
    predictor = load(checkpoint)  # columns x, colour=blue, colour=red
    array = np.array([[0.5, 0.0, 1.0], [1.0, 1.0, 0.0], [2.0, 1e39, 0.0]])
    with pytest.raises(PredictionInputError, match=r"the array holds 1e\+39, beyond float32's range at row 2, column "
                                                   r"'colour=blue'"):
        predictor.predict(array)
    with pytest.raises(PredictionInputError, match=r"the array holds NaN or inf at row 0, column 'x'"):
        predictor.predict(np.array([[np.nan, 0.0, 1.0]]))
    assert np.isfinite(predictor.predict(array[:2]).outputs).all()


def test_predict_script_refuses_a_csv_cell_and_an_npy_value_beyond_float32_in_one_line(checkpoint, tmp_path):
    write_csv(tmp_path / "new.csv", ["colour", "x"], [["red", 0.5], ["blue", "1e39"]])
    np.save(tmp_path / "new.npy", np.array([[1e308, 0.0, 1.0]]))
    for name, words in [("new.csv", "error: new.csv, line 3, column 'x': '1e39' is beyond float32's range"),
                        ("new.npy", "error: the array holds 1e+308, beyond float32's range at row 0, column 'x'")]:
        done = run_script(ROOT / "scripts" / "predict.py", str(checkpoint), name, "--out", f"{name}.out.csv", cwd=tmp_path)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
        assert done.returncode == 2 and len(errors) == 1 and errors[0].startswith(words), done.stderr
        assert not list(tmp_path.glob(f"{name}.out.csv*"))
