"""The tests' conda world: the upstream channel of small real packages (built by
``scripts/conda_build_channel.py`` and indexed by ``rattler.index``, each in a process of its own:
rattler_build and rattler must not be loaded into one process, two Rust runtimes crash it), a
spec of it, and the air side's consumer (``scripts/conda_consumer.py``: py-rattler solving and
installing from one channel URL and nothing else)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.cli import isolated_env

SCRIPTS = Path(__file__).resolve().parent / "scripts"
INDEX = ("import asyncio, sys; from rattler.index import index_fs; "
         "asyncio.run(index_fs(sys.argv[1], max_parallel=1, write_shards=False))")


def rattler_index(channel: Path) -> None:
    """Index ``channel`` with rattler's own indexer, in a process of its own. py-rattler 0.28's
    index_fs dies now and then with SIGSEGV on this machine (a crash in the library, not a bad
    input: the same call on the same files then succeeds), so a crashed run is retried."""
    for _ in range(5):
        r = subprocess.run([sys.executable, "-c", INDEX, str(channel)], capture_output=True, text=True)
        if r.returncode == 0:
            return
        if r.returncode > 0:
            raise AssertionError(f"rattler index {channel}: {r.stderr[-2000:]}")
        for p in channel.glob("*/repodata*"):
            p.unlink()
    raise AssertionError(f"rattler index {channel}: crashed 5 times")


def build_channel(root: Path) -> Path:
    """Build and index the test channel under ``root/upstream``; returns the channel directory."""
    chan = root / "upstream"
    subprocess.run([sys.executable, str(SCRIPTS / "conda_build_channel.py"), str(chan)], check=True, capture_output=True)
    rattler_index(chan)
    return chan


def conda_spec(path: Path, channel_url: str, specs: list[str], platforms=("linux-64", "osx-arm64"), extra: str = "",
               channel: str = "prod") -> Path:
    path.write_text(f"name: envs\nchannel: {channel}\nconda:\n  channels: [{channel_url}]\n  specs: {json.dumps(specs)}\n"
                    f"  platforms: {json.dumps(list(platforms))}\n{extra}")
    return path


def consume(channel: str, platform: str, prefix: Path | None, specs: list[str], cache: Path) -> list[dict]:
    """py-rattler in its own process, every proxy a closed port: only the given channel (file://
    or loopback, which bypasses the proxy) can be reached."""
    env = isolated_env(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", ALL_PROXY="http://127.0.0.1:9",
                       NO_PROXY="127.0.0.1", CONDARC=os.devnull, PIXI_HOME=str(cache / "pixi"))
    r = subprocess.run([sys.executable, str(SCRIPTS / "conda_consumer.py"), channel, platform, str(prefix or "-"), str(cache),
                        *specs], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
