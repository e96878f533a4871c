"""Conda fixtures: the tests' upstream channel, built once per session and served on 127.0.0.1.

The packages are real (made by py-rattler-build, see ``tests/support/conda_build_channel.py``) and the channel is
indexed by ``rattler.index``, each in a process of its own: rattler_build and rattler must not
be loaded into one process (two Rust runtimes; it crashes), and the tests' process uses rattler.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import Server, free_port

HERE = Path(__file__).resolve().parent
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
    subprocess.run([sys.executable, str(HERE.parent / "support" / "conda_build_channel.py"), str(chan)], check=True, capture_output=True)
    rattler_index(chan)
    return chan


def serve_dir(root: Path, probe: str) -> Server:
    port = free_port()
    return Server([sys.executable, str(HERE.parent / "support" / "servers" / "static_http.py"), str(root), str(port)],
                  f"http://127.0.0.1:{port}/{probe}")


@pytest.fixture(scope="session")
def conda_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """``dir``: the channel directory; ``url``: it served over HTTP (``http://127.0.0.1:PORT/upstream``)."""
    root = tmp_path_factory.mktemp("conda-upstream")
    chan = build_channel(root)
    server = serve_dir(root, "upstream/noarch/repodata.json")
    try:
        yield SimpleNamespace(dir=chan, url=server.url.removesuffix("/noarch/repodata.json"), root=root)
    finally:
        server.stop()
