"""The command line, as the tests call it: in-process (``cli``, fast) or as the real program in a
subprocess (``run``, ``killed``), with an environment that sees no setting of the caller's."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GAPSYNC = str(Path(sys.executable).with_name("gapsync"))
ARCH = platform.machine()


def isolated_env(**extra: str) -> dict[str, str]:
    """An environment where pip and uv see no global config, find-links or extra index, and
    gapsync no setting of the caller's (but the session's advisory store, see tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "GAPSYNC_"))}
    if os.environ.get("GAPSYNC_ADVISORIES"):
        env["GAPSYNC_ADVISORIES"] = os.environ["GAPSYNC_ADVISORIES"]
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["UV_NO_CONFIG"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


def run(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """The real command line, in a subprocess."""
    r = subprocess.run([GAPSYNC, *args], cwd=cwd, capture_output=True, text=True, env=env or isolated_env())
    if check and r.returncode != 0:
        raise AssertionError(f"gapsync {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def killed(*args: str, at: str) -> subprocess.CompletedProcess:
    """The real command line, killed (SIGKILL, by gapsync's own fault hook) at the named point."""
    r = subprocess.run([GAPSYNC, *map(str, args)], capture_output=True, text=True,
                       env=isolated_env(GAPSYNC_KILL_AT=at))
    return r


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str) -> Result:
    """The command line in-process (fast): same entry point, same exit-code mapping."""
    from gapsync.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())
