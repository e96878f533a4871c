"""Servers the tests run on 127.0.0.1, on free ports, stopped by PID.

``Server`` starts any command as a subprocess and waits for it as long as a cold start takes.
The scripts beside this file are the servers themselves, each run as ``python SCRIPT ...``
(``SERVERS / "static_http.py"``): a static file server, the Hub stand-in, a fault proxy, a
hostile upstream, a hostile registry, a referrers registry and a token server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gapsync.demo import free_port, wait_http

SERVERS = Path(__file__).resolve().parent

__all__ = ["SERVERS", "Server", "free_port", "hostile_upstream", "serve_dir", "static_server", "wait_http"]


class Server:
    """A subprocess server on 127.0.0.1, stopped by PID. Waited for as long as a cold start takes
    (up to 120 s); if it dies or never answers, the error shows the tail of its log."""

    def __init__(self, argv: list[str], url: str, cwd: Path | None = None, env: dict | None = None,
                 seconds: float = 120):
        import tempfile

        self.url = url
        fd, log = tempfile.mkstemp(prefix="gapsync-test-server-", suffix=".log")
        self.log = Path(log)
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_http(url, seconds, proc=self.proc, log=self.log)
        except BaseException:
            self.stop()  # never leak a server that did not come up
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.unlink(missing_ok=True)


def static_server(root: Path, *extra: str) -> Server:
    port = free_port()
    return Server([sys.executable, str(SERVERS / "static_http.py"), str(root), str(port), *extra],
                  f"http://127.0.0.1:{port}/simple/")


def serve_dir(root: Path, probe: str) -> Server:
    """``static_http.py`` serving ``root``; up when ``probe`` (a path under it) answers."""
    port = free_port()
    return Server([sys.executable, str(SERVERS / "static_http.py"), str(root), str(port)],
                  f"http://127.0.0.1:{port}/{probe}")


def hostile_upstream(mode: str, tmp_path: Path, *extra: str) -> Server:
    """``hostile_upstream.py`` lying in one ``mode``; ``.base`` is its URL, ``.requests()`` its request log."""
    port = free_port()
    log = tmp_path / f"upstream-{mode}-{port}.log"
    s = Server([sys.executable, str(SERVERS / "hostile_upstream.py"), str(port), "--mode", mode, "--log", str(log),
                *extra], f"http://127.0.0.1:{port}/health")
    s.base = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    s.requests = lambda: [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []  # type: ignore[attr-defined]
    return s
