"""Synthetic datamodules, the synthetic experiments (briefly trained), panels and numpy export."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from datamodules import FunctionDataModule, PlaneDataModule
from datamodules.synthetic import describe_polynomial, polynomial_target
from lightning_models.nets import QuadrantOneHot
from lightning_models.training.checkpoints import load_module
from lightning_models.util import import_class
from tests.conftest import CONFIGS, ROOT, build_from_config, run_train
from tests.helpers import assert_cross_validation, event_tags, run_script


def test_polynomial_target_is_text003s():
    weight, bias = polynomial_target()
    torch.testing.assert_close(weight.flatten(), torch.tensor([6.1861, -4.8020, 7.7076, -2.0393]), atol=1e-4, rtol=0)
    assert describe_polynomial(weight, bias) == "y = +6.19 x^1 -4.80 x^2 +7.71 x^3 -2.04 x^4 +4.40"


def test_function_datamodule_fresh_batches_and_fixed_evaluation_sets():
    dm = FunctionDataModule("exp", batch_size=10, steps_per_epoch=3, val_size=50)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and not torch.equal(batches[0][0], batches[1][0])
    for x, y in batches:
        assert x.shape == (10, 1) and bool(((x >= 0) & (x < 1)).all())
        torch.testing.assert_close(y, torch.exp(x))
    test_x, _ = dm.splits["test"]
    torch.testing.assert_close(test_x.flatten(), torch.linspace(0, 1, 100))
    again = FunctionDataModule("exp", val_size=50)
    again.setup()
    assert torch.equal(again.splits["val"][0], dm.splits["val"][0])
    poly = FunctionDataModule("polynomial", batch_size=8)
    x, y = poly.sample(8, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x[:, 1], x[:, 0] ** 2)
    assert x.shape == (8, 4) and y.shape == (8, 1)


def test_plane_datamodule_matches_text004_points_and_labels():
    np.random.seed(42)
    n = 50
    x = np.random.randn(4 * n, 2) + 3 * np.tile([[1, 1], [-1, 1], [-1, -1], [1, -1]], (n, 1))
    np.random.seed(7)
    global_state = np.random.get_state()[1].copy()
    dm = PlaneDataModule("xor")
    dm.setup()
    assert np.array_equal(np.random.get_state()[1], global_state)  # drawn from its own generator, not numpy's global one
    points, labels = dm.plane_points("train")
    np.testing.assert_allclose(points.numpy(), x.astype(np.float32))
    assert labels.tolist() == np.logical_xor(x[:, 0] > 0, x[:, 1] > 0).astype(int).tolist()
    assert not torch.equal(dm.plane_points("test")[0], points)  # test set is a fresh draw
    quadrants = PlaneDataModule("xor", features="quadrant")
    quadrants.setup()
    assert quadrants.splits["train"][0].shape == (200, 4)
    assert QuadrantOneHot()(torch.tensor([[1.0, 1.0], [-1.0, 2.0], [-1.0, -1.0], [2.0, -3.0]])).argmax(1).tolist() == [0, 1, 2, 3]
    blobs = PlaneDataModule("blobs", points_per_class=500)
    blobs.setup()
    bx, by = blobs.splits["train"]
    assert bx.shape == (1000, 2) and by.sum() == 500
    torch.testing.assert_close(bx[by == 1].mean(0), torch.tensor([2.0, 2.0]), atol=0.15, rtol=0)


def test_polynomial_recovers_every_coefficient(in_tmp):
    model, datamodule, trainer = build_from_config(CONFIGS / "polynomial_regression.yaml", "--trainer.enable_progress_bar=false")
    trainer.fit(model, datamodule=datamodule)
    weight, bias = polynomial_target()
    layer = model.net[0]
    assert (layer.weight.detach().flatten() - weight.flatten()).abs().max() <= 0.05
    assert (layer.bias.detach() - bias).abs().max() <= 0.05


def test_synthetic_panels_in_event_files(tmp_path):
    for name, quick in [("exp_linear_sgd", "--trainer.max_epochs=2"), ("xor_mlp", "--trainer.max_epochs=10"),
                        ("polynomial_regression", "--trainer.max_epochs=2")]:
        done = run_train(["fit", "--config", str(CONFIGS / f"{name}.yaml"), quick, "--trainer.check_val_every_n_epoch=1",
                          "--trainer.enable_progress_bar=false"], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    tags = {name: event_tags(tmp_path / "lightning_logs" / name / "version_0") for name in
            ("exp_linear_sgd", "xor_mlp", "polynomial_regression")}
    assert {"train/parameter_path", "train/loss_curve", "test/fitted_curve"} <= tags["exp_linear_sgd"]["images"]
    assert {"test/decision_surface", "train/loss_curve"} <= tags["xor_mlp"]["images"]
    assert "learned: y =" in done.stdout + done.stderr


def test_numpy_export_matches_torch(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "exp_fit.yaml"), "--trainer.max_epochs=2",
                      "--trainer.enable_progress_bar=false"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "lightning_logs" / "exp_fit" / "version_0" / "metrics.json").read_text())
    checkpoint = metrics["checkpoints"]["last"]
    out = tmp_path / "export"
    exported = run_script(ROOT / "scripts" / "export.py", checkpoint, "--format", "numpy", "--out", str(out), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    module = load_module(checkpoint)
    x = torch.linspace(0, 1, 100).unsqueeze(1)
    with torch.no_grad():  # exp_fit's datamodule leaves x as it is: the module's own output is the answer
        expected = module(x).double().numpy()
    sys.path.insert(0, str(out))
    try:
        import numpy_forward  # the copy written beside the weights, numpy only

        got = numpy_forward.forward(numpy_forward.load(str(out / "model.npz")), x.numpy())
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("numpy_forward", None)
    assert "import torch" not in (out / "numpy_forward.py").read_text()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_plane_folds_divide_training_and_validation_points_and_leave_the_test_points():
    plain = PlaneDataModule("xor")
    plain.setup()
    label_of = {tuple(point): label for split in ("train", "val") for point, label in zip(*(t.tolist() for t in plain.plane[split]))}
    assert len(label_of) == 400  # 200 training and 200 validation points, all distinct
    fold_rows = []
    for fold in range(5):
        data = PlaneDataModule("xor", fold=fold)
        data.setup()
        assert all(torch.equal(a, b) for a, b in zip(data.splits["test"], plain.splits["test"]))
        assert torch.equal(data.plane_points("test")[0], plain.plane_points("test")[0])
        for split in ("train", "val"):  # the inputs are the points, each with its own label
            points, labels = data.splits[split]
            assert labels.tolist() == [label_of[tuple(point)] for point in points.tolist()]
        fold_rows.append(tuple([tuple(point) for point in data.splits[split][0].tolist()] for split in ("train", "val")))
    assert_cross_validation(fold_rows, list(label_of), label_of, 5)
    quadrant = PlaneDataModule("xor", features="quadrant", standardize=True, fold=3)
    quadrant.setup()  # the plane points follow the fold too, and the statistics come from its training points
    assert torch.equal(quadrant.plane_points("val")[0], torch.tensor(fold_rows[3][1]))
    torch.testing.assert_close(quadrant.mean, QuadrantOneHot()(torch.tensor(fold_rows[3][0])).mean(0))


@pytest.mark.parametrize(("datamodule", "feature_map"), [
    (FunctionDataModule("polynomial", val_size=20), {"class_path": "lightning_models.nets.Powers", "init_args": {"degree": 4}}),
    (PlaneDataModule("xor", features="quadrant", standardize=True), {"class_path": "lightning_models.nets.QuadrantOneHot",
                                                                     "init_args": {}}),
    (PlaneDataModule("xor"), None)])
def test_the_checkpoint_names_the_feature_map_that_turns_the_raw_columns_into_the_model_inputs(datamodule, feature_map):
    """What prediction rebuilds from the checkpoint (``import_class(class_path)(**init_args)``, then the standardisation)
    gives the training inputs bit for bit from the raw columns the predictions CSV shows."""
    datamodule.setup()
    spec = datamodule.state_dict()["prediction_inputs"]
    assert spec["feature_map"] == feature_map and "transform" not in spec
    names, rows = datamodule.input_columns("test")
    assert names == spec["features"]  # the raw columns, not the features made from them
    rebuilt = import_class(feature_map["class_path"])(**feature_map["init_args"]) if feature_map else torch.nn.Identity()
    inputs = rebuilt(torch.tensor(rows))
    if spec["mean"] is not None:
        inputs = (inputs - torch.tensor(spec["mean"])) / torch.tensor(spec["std"])
    assert torch.equal(inputs, datamodule.splits["test"][0])
