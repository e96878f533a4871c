"""Shared fixtures. Servers run on 127.0.0.1 on free ports and are stopped by PID. The code the
fixtures and tests share (the command line, channels, wheels, servers...) is in ``tests/support/``;
this file holds fixtures only, and no test module imports it.

The session builds one small "world" once: an external index of tiny real wheels (served over
HTTP), a channel with one key, and bundles v1 and v2 of it. Tests copy what they change.

Every test has an advisory database, as an operator must (the shipped default policy blocks
Python packages and images when there is none): ``advisory_store`` imports the repository's
PyPA snapshot, cut to the packages the suite names (``TEST_ADVISORY_PACKAGES``) so that every
bundle does not carry 770 KB of advisories, into a session store, and points
``$GAPSYNC_ADVISORIES`` at it, for in-process ``cli`` calls and for ``run``'s subprocesses
alike. The records' ``modified`` dates are moved to the session's start: the store is current,
as an operator's is, so commands print no "stale database" notice beside the one-line errors
the tests check (matching never reads ``modified``). A test that needs "no database" passes
``--advisories EMPTY_DIR`` or sets the variable to an empty directory; a test that needs the
whole snapshot, or a stale database, uses ``tests.support.data.ADVISORIES`` as shipped (2024-10).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.channels import create, new_channel, write_spec
from tests.support.cli import ARCH, cli, run
from tests.support.servers import Server, hostile_upstream, static_server
from tests.support.wheels import make_wheel, write_index

TEST_ADVISORY_PACKAGES = frozenset({"jinja2", "paramiko", "requests", "urllib3", "pyyaml", "django", "flask",
                                    "pillow", "numpy", "setuptools", "pip", "cryptography", "idna", "certifi"})


@pytest.fixture(scope="session", autouse=True)
def advisory_store(tmp_path_factory) -> Path:
    """The session's advisory store (see the module docstring), in ``$GAPSYNC_ADVISORIES``."""
    import gzip
    from datetime import UTC, datetime

    from gapsync.advisories import import_db, pypi_names
    from tests.support.data import ADVISORIES

    base = tmp_path_factory.mktemp("advisories")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    records = [rec for rec in map(json.loads, gzip.open(ADVISORIES, "rt", encoding="utf-8"))
               if pypi_names(rec) & TEST_ADVISORY_PACKAGES]
    (base / "subset.osv.jsonl").write_text("".join(json.dumps({**rec, "modified": now}) + "\n" for rec in records),
                                           encoding="utf-8")
    store = base / "store"
    import_db(base / "subset.osv.jsonl", store,
              source_name=f"{ADVISORIES.name} (packages the tests name, dated {now})")
    before = os.environ.get("GAPSYNC_ADVISORIES")
    os.environ["GAPSYNC_ADVISORIES"] = str(store)
    yield store
    if before is None:
        os.environ.pop("GAPSYNC_ADVISORIES", None)
    else:
        os.environ["GAPSYNC_ADVISORIES"] = before


@pytest.fixture
def gs():
    return run


@pytest.fixture(scope="session")
def minisign_bin() -> str:
    path = shutil.which("minisign")
    if not path:
        pytest.skip("minisign not installed (apt-get install minisign)")
    return path


@pytest.fixture(scope="session")
def ext_index(tmp_path_factory):
    """The external zone: a PEP 503 index of tiny real wheels, served over HTTP with Range."""
    root = tmp_path_factory.mktemp("external")
    files = root / "files"
    make_wheel(files, "alpha", "1.0", requires=("beta>=1",))
    make_wheel(files, "beta", "1.0")
    make_wheel(files, "beta", "2.0", requires_python=">=3.8")
    make_wheel(files, "beta", "3.0")  # yanked below: the resolver must not pick it
    make_wheel(files, "gamma", "1.0", requires=('delta; python_version >= "3.12"', 'winonly; sys_platform == "win32"'))
    make_wheel(files, "delta", "1.0")
    make_wheel(files, "winonly", "1.0")
    make_wheel(files, "native", "1.0", tag=f"cp311-cp311-manylinux_2_17_{ARCH}")
    make_wheel(files, "native", "1.0", tag=f"cp312-cp312-manylinux_2_17_{ARCH}")
    make_wheel(files, "native", "1.0", tag="cp311-cp311-win_amd64")
    make_wheel(files, "newpy", "1.0", requires_python=">=3.12")
    make_wheel(files, "later", "1.0")
    write_index(root, yanked={"beta-3.0-py3-none-any.whl": "broken release"})
    log = root / "requests.log"
    server = static_server(root, "--log", str(log))
    yield SimpleNamespace(root=root, url=server.url, log=log)
    server.stop()


@pytest.fixture(scope="session")
def world(ext_index, tmp_path_factory):
    """Channel 'prod' with bundle v1 (alpha, gamma, native) and v2 (v1 + newpy), both full."""
    base = tmp_path_factory.mktemp("world")
    ch = new_channel(base)
    spec = write_spec(base / "gapsync.yaml", ext_index.url, ["alpha", "gamma", "native"])
    b1 = create(ch, spec, base / "out1")
    spec2 = write_spec(base / "gapsync2.yaml", ext_index.url, ["alpha", "gamma", "native", 'newpy; python_version >= "3.12"'])
    b2 = create(ch, spec2, base / "out2")
    return SimpleNamespace(**vars(ch), spec=spec, spec2=spec2, b1=b1, b2=b2, index=ext_index)


@pytest.fixture
def mirror(world, tmp_path) -> Path:
    """A fresh mirror with the world's root pinned."""
    m = tmp_path / "mirror"
    r = cli("trust", "pin", world.root, "--mirror", m)
    assert r.code == 0, r.err
    return m


@pytest.fixture
def upstream(tmp_path):
    """Factory: ``upstream(mode, *extra) -> Server``, a hostile upstream lying in one way
    (``tests/support/servers/hostile_upstream.py``); all are stopped when the test ends."""
    started: list[Server] = []

    def make(mode: str, *extra: str) -> Server:
        s = hostile_upstream(mode, tmp_path, *extra)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
