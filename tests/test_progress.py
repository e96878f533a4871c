"""Long work shows progress (issue 17): bundle create's downloads as a byte progress bar with
rate and ETA on a terminal (a real pty); off a terminal JSON lines when the log format asks for
them (the scheduled job `sync` always does) and nothing otherwise, so a scripted failure stays one
line; nothing once cached."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess

from tests.support.channels import new_channel, write_spec
from tests.support.cli import GAPSYNC, cli, isolated_env
from tests.support.servers import static_server
from tests.support.wheels import make_wheel, write_index


def _index(tmp_path):
    root = tmp_path / "up"
    make_wheel(root / "files", "big", "1.0", payload=os.urandom(3 << 20))
    make_wheel(root / "files", "small", "1.0")
    write_index(root)
    return static_server(root)


def test_off_a_terminal_downloads_are_json_lines_when_asked(tmp_path):
    server = _index(tmp_path)
    try:
        ch = new_channel(tmp_path)
        spec = write_spec(tmp_path / "g.yaml", server.url, ["big", "small"], pythons=("3.11",))
        args = ["bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "--cache", tmp_path / "cache"]
        r = cli(*args, "-o", tmp_path / "o0")  # a script: no progress, stderr stays for errors
        assert r.code == 0 and '"fetch.start"' not in r.err, r.err
        shutil.rmtree(tmp_path / "cache")
        os.environ["GAPSYNC_LOG_FORMAT"] = "json"
        try:
            r = cli(*args, "-o", tmp_path / "o1")
        finally:
            del os.environ["GAPSYNC_LOG_FORMAT"]
        assert r.code == 0, r.err
        ev = [json.loads(x) for x in r.err.splitlines() if x.startswith("{")]
        start = next(e for e in ev if e["event"] == "fetch.start")
        done = next(e for e in ev if e["event"] == "fetch.done")
        assert start["files"] == 2 and start["bytes"] in (None, done["bytes_done"])  # None: the index gave no sizes
        assert done["bytes_done"] > 3 << 20 and done["files_done"] == 2 and "rate_bytes_s" in done
        os.environ["GAPSYNC_LOG_FORMAT"] = "json"
        try:
            r = cli(*args, "-o", tmp_path / "o2")  # everything cached now: no download, no progress lines
        finally:
            del os.environ["GAPSYNC_LOG_FORMAT"]
        assert r.code == 0 and '"fetch.start"' not in r.err, r.err
    finally:
        server.stop()


def test_on_a_terminal_a_byte_progress_bar(tmp_path):
    server = _index(tmp_path)
    try:
        ch = new_channel(tmp_path)
        spec = write_spec(tmp_path / "g.yaml", server.url, ["big", "small"], pythons=("3.11",))
        master, slave = pty.openpty()
        p = subprocess.Popen([GAPSYNC, "bundle", "create", "-f", str(spec), "--state", str(ch.state), "--key",
                              str(ch.keys[0]), "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "o")],
                             stdout=subprocess.PIPE, stderr=slave, env=isolated_env(COLUMNS="120"))
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        p.wait(120)
        os.close(master)
        text = out.decode(errors="replace")
        assert p.returncode == 0, text
        assert "downloading 2 files" in text and "B/s" in text and "MB" in text, text
        assert '"fetch.start"' not in text  # people get the bar, not JSON
    finally:
        server.stop()
