"""Shared helpers: run the CLI in-process or as a subprocess, in a temporary working directory."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker (and the runs it starts): no oversubscription
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    gpus = torch.cuda.device_count()  # NVML: starts no CUDA, so the worker's GPU can still be chosen
    if gpus > 1 and "CUDA_VISIBLE_DEVICES" not in os.environ:  # a GPU per worker, in turn, not all on the first
        os.environ["CUDA_VISIBLE_DEVICES"] = str(int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw")) % gpus)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"


# Runs that need their own process: callbacks that kill or stall it, and DDP, whose launcher re-runs the command line.
FRESH_PROCESS_ARGS = ("KillAtBatch", "StallCheckpointWrite", "--trainer.strategy", "--trainer.devices", "--trainer.num_nodes")


def run_train(args: list[str], cwd: Path, extra_path: Path | None = None, timeout: int = 300,
              fresh_process: bool = False) -> subprocess.CompletedProcess:
    """``python scripts/train.py ARGS`` in ``cwd``; returns the finished process (output captured). It runs in this
    process (``train_cli.main``, the script's only line; ``extra_path`` on ``sys.path`` for the run) unless asked for a fresh
    one or the run kills its process: a fresh interpreter costs seconds of imports per run."""
    if fresh_process or any(name in arg for arg in args for name in FRESH_PROCESS_ARGS):
        env = dict(os.environ)
        if extra_path is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
        command = [sys.executable, str(ROOT / "scripts" / "train.py"), *args]
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    from lightning_models.training.train_cli import main

    out, err, here, code = io.StringIO(), io.StringIO(), os.getcwd(), 0
    handler = logging.StreamHandler(err)  # Lightning's console lines, which a process would print to stderr
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # INFO, as Lightning sets it in a process whose root logger has no handler
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    added = [str(extra_path)] if extra_path is not None else []
    sys.path[:0], before = added, set(sys.modules)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exited:  # as the interpreter would report it
        code = exited.code if isinstance(exited.code, int) else 0 if exited.code is None else 1
        if isinstance(exited.code, str):
            err.write(exited.code + "\n")
    except Exception:
        code = 1
        err.write(traceback.format_exc())
    finally:
        os.chdir(here)
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
        del sys.path[: len(added)]
        for name in set(sys.modules) - before:  # a package the run imported from the test's folder: gone with it
            # (not the project's own modules when that folder is ROOT: a second copy of a class is another class)
            if added and Path(added[0]).resolve() != ROOT and str(getattr(sys.modules[name], "__file__", "") or "").startswith(added[0]):
                del sys.modules[name]
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def build_from_config(config: str | Path, *overrides: str):
    """Model, datamodule and trainer exactly as ``scripts/train.py`` builds them, without running."""
    from lightning_models import build

    parts = build(config, *overrides)
    return parts.model, parts.datamodule, parts.trainer


# (name, compute capability) of the GPU kinds users train on; None: a machine without CUDA
GPUS = {"A100": ("NVIDIA A100-SXM4-40GB", (8, 0)), "H100": ("NVIDIA H100 80GB HBM3", (9, 0)), "T4": ("Tesla T4", (7, 5)),
        "V100": ("Tesla V100-SXM2-16GB", (7, 0)), "P100": ("Tesla P100-PCIE-16GB", (6, 0)), "CPU": None}


def fake_machine(monkeypatch: pytest.MonkeyPatch, flags: set[str], gpu: str = "CPU", count: int = 1,
                 readers: Path | None = None, free_memory: int = 15 << 30) -> None:
    """A CPU with ``flags`` and ``count`` GPUs of kind ``gpu``, faked beneath the functions torch and Lightning call:
    ``device_count`` (Lightning counts devices with it; ``is_available`` is ``device_count() > 0`` under Lightning's
    NVML check), ``current_device`` and ``get_device_properties``, which torch's own ``get_device_capability``,
    ``get_device_name`` and ``is_bf16_supported`` read; and the tensor ``is_bf16_supported`` tries with
    ``including_emulation=True``, which succeeds on every CUDA GPU (Turing and Volta emulate bfloat16).
    ``readers``: a file the pid of every process that asks for the device's properties is appended to;
    ``free_memory``: what ``torch.cuda.mem_get_info`` says is free of the 16 GB of each GPU."""
    import torch

    from lightning_models import machine

    name, (major, minor) = GPUS[gpu] or ("", (0, 0))
    monkeypatch.setattr(machine, "cpu_info", lambda: ("Fake CPU", flags))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if GPUS[gpu] else 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: torch.cuda.device_count() > 0)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    def properties(device=None):
        if readers is not None:
            with open(readers, "a") as pids:
                pids.write(f"{os.getpid()}\n")
        return SimpleNamespace(name=name, major=major, minor=minor, total_memory=16 << 30)

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_memory, 16 << 30))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a temporary directory so lightning_logs/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def postgres_url(monkeypatch):
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port that asks for a password (scram-sha-256; run as
    the `postgres` user when root). Yields the URL without the password; PGPASSWORD holds it, as libpq reads it."""
    from tests.helpers import PASSWORD, free_port, pg_binary  # here: the module's top sets the thread count first

    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install -e '.[test]'")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="pg-"))
    (folder / "pwfile").write_text(PASSWORD + "\n")
    if as_user:
        for path in (folder, folder / "pwfile"):
            shutil.chown(path, "postgres")
    data, port = folder / "data", free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth", "scram-sha-256", "--pwfile",
                    str(folder / "pwfile")], check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
                   check=True, capture_output=True)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"  # psycopg 3, named explicitly
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
