"""Shared helpers: run the CLI in-process or as a subprocess, in a temporary working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker (and the runs it starts): no oversubscription
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_train(args: list[str], cwd: Path, extra_path: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python scripts/train.py ARGS`` in ``cwd``; returns the finished process (output captured)."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def build_from_config(config: str | Path, *overrides: str):
    """Model, datamodule and trainer exactly as ``scripts/train.py`` builds them, without running."""
    from lightning_models import build

    parts = build(config, *overrides)
    return parts.model, parts.datamodule, parts.trainer


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a temporary directory so lightning_logs/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
