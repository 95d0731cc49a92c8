"""Determinism, non-finite losses, and safe checkpoint loading."""

import json
import pickle

import pytest
import torch

from lightning_models.base import NonFiniteLossError
from lightning_models.checkpoints import load_module
from tests.conftest import CONFIGS, build_from_config, run_train


def train_once(*overrides):
    model, datamodule, trainer = build_from_config(
        CONFIGS / "iris_mlp_classifier.yaml", "--trainer.max_epochs=4", "--trainer.enable_progress_bar=false",
        "--data.init_args.batch_size=10", *overrides,
    )
    trainer.fit(model, datamodule=datamodule)
    return trainer.test(model, datamodule=datamodule, verbose=False)[0], model


def test_same_seed_same_metrics_twice(in_tmp):
    first, model_a = train_once()
    second, model_b = train_once()
    assert first == second
    assert all(torch.equal(a, b) for a, b in zip(model_a.parameters(), model_b.parameters()))
    other, _ = train_once("--seed_everything=1")
    assert other["test/loss"] != first["test/loss"]


def test_non_finite_loss_stops_with_step_and_cause(in_tmp):
    with pytest.raises(NonFiniteLossError, match=r"global step \d+.*learning rate"):
        train_once("--model.init_args.lr=1e30", "--model.init_args.optimizer=sgd")


def test_cli_non_finite_loss_is_one_clear_error(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--model.init_args.optimizer=sgd",
                      "--model.init_args.lr=1e30", "--trainer.enable_progress_bar=false"], tmp_path)
    assert done.returncode == 1 and "error: training loss became" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("lightning_logs/*/version_*/metrics.json"))  # nothing looks successful


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "module_class": "lightning_models.ClassificationModule", "payload": Exploit()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_module(path)
    assert "pwned" not in capsys.readouterr().out


def test_metrics_json_records_seed_and_versions(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_linear_regression.yaml"), "--trainer.max_epochs=2",
                      "--seed_everything=7", "--trainer.enable_progress_bar=false"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(next(tmp_path.glob("lightning_logs/*/version_0/metrics.json")).read_text())
    assert metrics["seed"] == 7 and metrics["versions"]["torch"] == torch.__version__
