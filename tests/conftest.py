"""Shared fixtures. Servers run on 127.0.0.1 on free ports and are stopped by PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GAPSYNC = str(Path(sys.executable).with_name("gapsync"))


def isolated_env(**extra: str) -> dict[str, str]:
    """An environment where pip sees no global config, find-links or extra index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "GAPSYNC_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_NO_CONFIG"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


def run(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    r = subprocess.run([GAPSYNC, *args], cwd=cwd, capture_output=True, text=True, env=env or isolated_env())
    if check and r.returncode != 0:
        raise AssertionError(f"gapsync {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture
def gs():
    return run


@pytest.fixture(scope="session")
def minisign_bin() -> str:
    path = shutil.which("minisign")
    if not path:
        pytest.skip("minisign not installed (apt-get install minisign)")
    return path
