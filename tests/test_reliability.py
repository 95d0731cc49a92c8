"""Determinism, non-finite losses, and safe checkpoint loading."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datamodules import CSVDataModule, ImageFolderDataModule, IrisDataModule
from lightning_models.base import NonFiniteLossError
from lightning_models.training.checkpoints import CheckpointError, load_module
from lightning_models.training.run_folders import newest_last_checkpoint
from tests.conftest import CONFIGS, ROOT, build_from_config, run_train


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


SGD_LR_1E30 = json.dumps({"class_path": "torch.optim.SGD", "init_args": {"lr": 1e30}})


def test_non_finite_loss_stops_with_step_and_cause(in_tmp):
    with pytest.raises(NonFiniteLossError, match=r"global step \d+.*learning rate"):
        train_once(f"--model.init_args.optimizer={SGD_LR_1E30}")


def test_cli_non_finite_loss_is_one_clear_error(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), f"--model.init_args.optimizer={SGD_LR_1E30}",
                      "--trainer.enable_progress_bar=false"], tmp_path)
    assert done.returncode == 1 and "error: training loss became" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("lightning_logs/*/version_*/metrics.json"))  # nothing looks successful


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "module_class": "lightning_models.ClassificationModule", "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="evil.ckpt: refused: it holds objects beyond tensors and plain values"):
        load_module(path)
    assert "pwned" not in capsys.readouterr().out


def test_metrics_json_records_seed_and_versions(tmp_path):
    done = run_train(["fit", "--config", str(CONFIGS / "iris_linear_regression.yaml"), "--trainer.max_epochs=2",
                      "--seed_everything=7", "--trainer.enable_progress_bar=false"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(next(tmp_path.glob("lightning_logs/*/version_0/metrics.json")).read_text())
    assert metrics["seed"] == 7 and metrics["versions"]["torch"] == torch.__version__


def tiny_fashion(folder: Path) -> list[str]:
    from tests.helpers import write_idx

    return [f"--data.init_args.data_dir={write_idx(folder / 'tiny')}"]


def wine_table(folder: Path) -> list[str]:
    from tests.helpers import wine_csv

    return [f"--data.init_args.path={wine_csv(folder / 'wine.csv')}"]


def image_folder(folder: Path) -> list[str]:
    from tests.helpers import write_folder

    return [f"--data.init_args.root={write_folder(folder / 'images', per_class=20)}"]


# One experiment of each datamodule family, shortened; each is killed at (epoch, batch) and resumed.
# (config, overrides, kill point, data the test writes)
RESUME_CASES = {
    "iris": ("iris_mlp_classifier", ["--trainer.max_epochs=5", "--data.init_args.batch_size=16"], (3, 1), None),
    "function": ("exp_fit", ["--trainer.max_epochs=4", "--data.init_args.steps_per_epoch=10"], (2, 4), None),
    "plane": ("xor_mlp", ["--trainer.max_epochs=4"], (2, 3), None),
    # dropout, the one-cycle schedule and augmentation from epoch 1: every random draw must resume
    "fashion": ("fashion_cnn", ["--trainer.max_epochs=3", "--data.init_args.val_size=16", "--data.init_args.download=false",
                                "--data.init_args.batch_size=16", "--data.init_args.augment_from_epoch=1"], (2, 2),
                tiny_fashion),
    "csv": ("examples/csv_classification", ["--trainer.max_epochs=4", "--data.init_args.batch_size=16"], (2, 3), wine_table),
    "image_folder": ("examples/image_folder", ["--trainer.max_epochs=3", "--data.init_args.batch_size=16",
                                               "--data.init_args.augment_from_epoch=1"], (2, 1), image_folder),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(RESUME_CASES))
def test_killed_run_resumes_to_the_same_metrics(tmp_path, family):
    config, overrides, (epoch, batch), write_data = RESUME_CASES[family]
    data = write_data(tmp_path) if write_data else []
    args = ["fit", "--config", str(CONFIGS / f"{config}.yaml"), *overrides, *data, "--trainer.check_val_every_n_epoch=1",
            "--trainer.enable_progress_bar=false"]
    name = Path(config).name
    kill = json.dumps({"class_path": "tests.helpers.KillAtBatch", "init_args": {"epoch": epoch, "batch": batch}})
    (tmp_path / "whole").mkdir(), (tmp_path / "killed").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args, *extra], cwd=tmp_path / folder,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for folder, extra in (("whole", []), ("killed", [f"--trainer.callbacks+={kill}"]))]
    (whole_err, killed_err) = (run.communicate(timeout=300)[1] for run in runs)
    assert runs[0].returncode == 0, whole_err[-2000:]
    assert runs[1].returncode == -signal.SIGKILL, killed_err[-2000:]
    run_dir = tmp_path / "killed" / "lightning_logs" / name / "version_0"
    assert not (run_dir / "metrics.json").exists()
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == epoch - 1

    resumed = run_train([*args, "--ckpt_path", "last"], tmp_path / "killed", extra_path=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    assert [path.name for path in run_dir.parent.iterdir()] == ["version_0"]  # same run folder, continued
    expected = json.loads(next((tmp_path / "whole").glob("lightning_logs/*/version_0/metrics.json")).read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    for key in ("train", "val", "test", "global_step", "epochs"):
        assert got[key] == expected[key], key


def test_ckpt_path_last_without_a_run_starts_from_scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert newest_last_checkpoint("nothing_here") == (None, None)
    for version in (0, 2, 10):
        folder = Path("lightning_logs", "exp", f"version_{version}", "checkpoints")
        folder.mkdir(parents=True)
        if version != 10:  # the newest run has no checkpoint yet
            (folder / "last.ckpt").write_bytes(b"")
    assert newest_last_checkpoint("exp") == (str(Path("lightning_logs/exp/version_2/checkpoints/last.ckpt")), 2)


@pytest.mark.slow
def test_kill_in_the_middle_of_a_checkpoint_write_leaves_the_last_good_one(tmp_path):
    """A real run stalls halfway through writing a checkpoint (``StallCheckpointWrite``), signals it by a
    marker file and is SIGKILLed there: the half-written bytes are in a temporary file, every ``.ckpt``
    in the run folder still loads, ``last.ckpt`` is the previous epoch's, and the run resumes from it to
    the metrics of an uninterrupted run."""
    marker = tmp_path / "stalled"
    (tmp_path / "whole").mkdir(), (tmp_path / "killed").mkdir(), (tmp_path / "tmp").mkdir()
    args = ["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.max_epochs=4",
            "--data.init_args.batch_size=16", "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false"]
    stall = json.dumps({"class_path": "tests.helpers.StallCheckpointWrite", "init_args": {"epoch": 2, "marker": str(marker)}})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path / "tmp")}
    killed = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args, f"--trainer.callbacks+={stall}"],
                              cwd=tmp_path / "killed", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    whole = run_train(args, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    for _ in range(3000):  # wait for the marker (or the run's end, which would be a failure)
        if marker.exists() or killed.poll() is not None:
            break
        time.sleep(0.1)
    assert marker.exists(), killed.communicate()[1][-2000:]
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    partial, half = marker.read_text().split()
    assert Path(partial).parent == tmp_path / "tmp" and Path(partial).stat().st_size == int(half) > 0  # killed mid-write
    with pytest.raises((RuntimeError, OSError)):  # torch's zip reader refuses a cut-off file either way
        torch.load(partial, weights_only=True)  # the half file is garbage, and is not where a checkpoint is looked for
    run_dir = tmp_path / "killed" / "lightning_logs" / "iris_mlp_classifier" / "version_0"
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        torch.load(path, weights_only=True)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    resumed = run_train([*args, "--ckpt_path", "last"], tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = json.loads(next((tmp_path / "whole").glob("lightning_logs/*/version_0/metrics.json")).read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    for key in ("train", "val", "test", "global_step", "epochs"):
        assert got[key] == expected[key], key


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_and_logs_once(tmp_path):
    (tmp_path / "ddp").mkdir(), (tmp_path / "single").mkdir()
    args = ["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false"]
    ddp = run_train([*args, "--trainer.strategy=ddp", "--trainer.devices=2"], tmp_path / "ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("iris_mlp_classifier: test/acc=") == 1  # the summary is printed by rank zero only
    runs = list((tmp_path / "ddp" / "lightning_logs" / "iris_mlp_classifier").iterdir())
    assert [run.name for run in runs] == ["version_0"]
    writers = {path.name.split(".")[-2] for path in runs[0].glob("events.out.tfevents.*")}
    assert len(writers) == 1  # every event file comes from one process (the name ends in .<pid>.<n>)
    single = run_train(args, tmp_path / "single")
    assert single.returncode == 0, single.stderr[-3000:]
    # Full-batch iris: both ranks see all rows, DDP averages identical gradients -> the same model.
    got, expected = (json.loads(next((tmp_path / name).glob("lightning_logs/*/version_0/metrics.json")).read_text())
                     for name in ("ddp", "single"))
    assert got["test"]["test/acc"] == expected["test"]["test/acc"] >= 0.9
    assert got["test"]["test/loss"] == pytest.approx(expected["test"]["test/loss"], rel=1e-5)


# (config, options, data the test writes, datamodule built as the config builds it)
DDP_CASES = {
    "iris": ("iris_mlp_classifier", ["--data.init_args.batch_size=10", "--model.init_args.updates_per_step=1"], None,
             lambda folder: IrisDataModule(val_fraction=0.2, batch_size=10)),
    "csv": ("examples/csv_classification", ["--data.init_args.batch_size=16"], wine_table,
            lambda folder: CSVDataModule(str(folder / "wine.csv"), target="class", batch_size=16)),
    "image_folder": ("examples/image_folder", ["--data.init_args.batch_size=8", "--data.init_args.augment_from_epoch=1"],
                     image_folder, lambda folder: ImageFolderDataModule(str(folder / "images"), image_size=28, batch_size=8)),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(DDP_CASES))
def test_ddp_mini_batches_deal_the_rows_and_reduce_to_a_single_process_evaluation(tmp_path, family):
    """Two CPU ranks with mini-batches: each rank takes half the training rows (the step count shows it),
    and the test metrics reduced over ranks equal one process's evaluation of the saved best weights."""
    config, options, write_data, datamodule = DDP_CASES[family]
    data = write_data(tmp_path) if write_data else []
    # the reference below evaluates in 32-bit; precision: auto (image_folder) would be bf16-mixed on a CPU with native bf16
    done = run_train(["fit", "--config", str(CONFIGS / f"{config}.yaml"), "--trainer.accelerator=cpu",
                      "--trainer.enable_progress_bar=false", "--trainer.strategy=ddp", "--trainer.devices=2",
                      "--trainer.max_epochs=3", "--trainer.check_val_every_n_epoch=1", "--trainer.precision=32-true",
                      *options, *data], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(next(tmp_path.glob("lightning_logs/*/version_0/metrics.json")).read_text())
    reference = datamodule(tmp_path)
    reference.setup()
    rows = len(reference.splits["train"][1])
    assert metrics["global_step"] == 3 * math.ceil(rows // 2 / reference.batch_size)  # one epoch: half the rows a rank
    model = load_module(metrics["checkpoints"]["best"])
    with torch.no_grad():
        logits, targets = (torch.cat(parts) for parts in zip(*[(model(inputs), labels)
                                                               for inputs, labels in reference.test_dataloader()]))
    assert len(targets) == len(reference.splits["test"][1])
    assert metrics["test"]["test/acc"] == pytest.approx((logits.argmax(1) == targets).float().mean().item(), abs=1e-6)
    assert metrics["test"]["test/loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-5)


@pytest.mark.slow
def test_torchrun_two_nodes_on_one_machine_equal_one_process(tmp_path):
    """docs/resume-ddp.md's multi-node command, as two torchrun launchers (node ranks 0 and 1) on 127.0.0.1, gloo,
    one process each, in one shared folder as on a cluster file system."""
    from tests.helpers import free_port

    (tmp_path / "nodes").mkdir(), (tmp_path / "single").mkdir()
    args = ["fit", "--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false"]
    port = str(free_port())
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--nnodes", "2", "--nproc_per_node", "1",
                "--master_addr", "127.0.0.1", "--master_port", port]
    nodes = [subprocess.Popen([*torchrun, "--node_rank", str(rank), str(ROOT / "scripts" / "train.py"), *args,
                               "--trainer.strategy=ddp", "--trainer.devices=1", "--trainer.num_nodes=2"],
                              cwd=tmp_path / "nodes", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert sum(output.count("iris_mlp_classifier: test/acc=") for output in outputs) == 1  # global rank zero only
    single = run_train(args, tmp_path / "single")
    assert single.returncode == 0, single.stderr[-3000:]
    got, expected = (json.loads(next((tmp_path / name).glob("lightning_logs/*/version_0/metrics.json")).read_text())
                     for name in ("nodes", "single"))
    assert got["global_step"] == expected["global_step"]
    for stage in ("val", "test"):  # full batch: both nodes see all rows, DDP averages identical gradients
        for key, value in expected[stage].items():
            assert got[stage][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
