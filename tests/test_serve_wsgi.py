"""The serve application under a site's own WSGI server (gunicorn, as the operator guide shows),
and the file opener it relies on, in both of its modes (openat2 and the component walk)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gapsync.mirror.serve import MirrorRoot
from tests.support.cli import cli, isolated_env
from tests.support.raw_http import get
from tests.support.servers import Server, free_port

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


@pytest.fixture(scope="module")
def gunicorn_served(world, tmp_path_factory):
    if not os.access(GUNICORN, os.X_OK):
        pytest.skip("gunicorn is not installed (pip install -e .[test])")
    m = tmp_path_factory.mktemp("wsgi") / "mirror"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    port = free_port()
    env = {**isolated_env(), "GAPSYNC_MIRROR": str(m)}
    s = Server([GUNICORN, "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--worker-class", "gthread",
                "gapsync.mirror.wsgi:application"], f"http://127.0.0.1:{port}/simple/", env=env)
    yield m, port
    s.stop()


def test_gunicorn_runs_the_app(gunicorn_served, tmp_path):
    m, port = gunicorn_served
    r = get(port, "/simple/alpha/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert r.status == 200 and json.loads(r.body)["name"] == "alpha"
    whl = (m / "pypi/files/alpha-1.0-py3-none-any.whl").read_bytes()
    r = get(port, "/files/alpha-1.0-py3-none-any.whl", headers={"Range": "bytes=10-29"})
    assert r.status == 206 and r.body == whl[10:30]
    r = get(port, "/files/alpha-1.0-py3-none-any.whl", headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert r.status == 416
    r = get(port, "/simple/Six%0d%0aSet-Cookie:%20session=x/")
    assert 400 <= r.status < 500 and "set-cookie" not in r.header_names()
    # and pip installs from it
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    p = subprocess.run([str(venv / "bin/pip"), "install", "--isolated", "--no-cache-dir", "--index-url",
                        f"http://127.0.0.1:{port}/simple/", "alpha"], capture_output=True, text=True, env=isolated_env())
    assert p.returncode == 0, p.stdout + p.stderr


def test_wsgi_module_needs_the_mirror():
    env = {k: v for k, v in os.environ.items() if k != "GAPSYNC_MIRROR"}
    r = subprocess.run([sys.executable, "-c", "import gapsync.mirror.wsgi"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "GAPSYNC_MIRROR" in r.stderr


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "walk"])
def test_mirror_root_opens_regular_files_only(tmp_path, openat2):
    m = tmp_path / "mirror"
    (m / "pypi/files").mkdir(parents=True)
    (m / "pypi/files/ok.whl").write_bytes(b"fine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("top secret")
    (m / "pypi/files/link.whl").symlink_to(outside / "secret")
    (m / "pypi/files/rel.whl").symlink_to("ok.whl")  # even a link inside the mirror is not followed
    os.mkfifo(m / "pypi/files/fifo.whl")
    (m / "pypi/linked").symlink_to(outside)
    (m / "pypi/files/dir.whl").mkdir()
    root = MirrorRoot(m)
    if not openat2:
        root._openat2 = None
    elif root._openat2 is None:
        pytest.skip("openat2 is not available here")
    f, reason = root.open(("pypi", "files", "ok.whl"))
    assert f is not None and f.read() == b"fine" and f.st.st_size == 4
    f.close()
    for parts in (("pypi", "files", "link.whl"), ("pypi", "files", "rel.whl"), ("pypi", "files", "fifo.whl"),
                  ("pypi", "linked", "secret"), ("pypi", "files", "dir.whl"), ("pypi", "files", "missing.whl"),
                  ("pypi", "..", "..", "outside", "secret"), ("pypi", "files/../../outside", "secret")):
        f, reason = root.open(parts)
        assert f is None and reason, parts
    if os.geteuid() == 0:  # a device where a file is expected
        os.mknod(m / "pypi/files/null.whl", 0o600 | 0o020000, os.makedev(1, 3))
        assert root.open(("pypi", "files", "null.whl"))[0] is None


def test_served_urls_with_urllib_keep_working(gunicorn_served):
    _, port = gunicorn_served
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/simple") as r:  # redirected to /simple/
        assert r.status == 200 and r.url.endswith("/simple/")
