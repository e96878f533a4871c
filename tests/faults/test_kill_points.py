"""SIGKILL at many points of an import and a create, then a re-run: the result is identical, file
for file and byte for byte, to an uninterrupted run, and no reader ever saw a half-written file.

The kill points are named in the code (gapsync/faults.py: GAPSYNC_KILL_AT=<point>[:<n>]); the
process kills itself with SIGKILL there, so nothing is cleaned up, as after a power cut."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli, killed
from tests.support.trees import snapshot

IMPORT_POINTS = ["import.staged-blob:1", "import.staged-blob:3", "import.stored-blob:1", "import.stored-blob:4",
                 "publish.pep503.file:1", "publish.pep503.file:5", "publish.pep503.page:1", "publish.pep503.page:3",
                 "import.published.Pep503Index", "import.published.OciLayout", "import.published.HfCache",
                 "import.committed-trust"]


def public(m: Path) -> dict:
    """What readers and later imports see: the published trees and the blob store (the TUF
    client state lives in md-N directories with random suffixes, compared by content instead)."""
    snap = snapshot(m)
    out = {k: v for k, v in snap.items() if not k.startswith((".gapsync/staging", ".gapsync/trust/prod/md-",
                                                               ".gapsync/trust/prod/current"))
           and not k.endswith(("state.json", "pinned.json"))}  # pinned.json holds the time of pinning
    state = json.loads((m / ".gapsync/trust/prod/state.json").read_text())
    out["state.version"] = state["version"]
    for name in ("timestamp.json", "snapshot.json", "targets.json"):
        out[f"tuf/{name}"] = (m / ".gapsync/trust/prod/current" / name).read_bytes()
    return out


@pytest.fixture(scope="module")
def clean_import(world, tmp_path_factory):
    m = tmp_path_factory.mktemp("clean") / "m"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b2, "--mirror", m).code == 0
    return public(m)


@pytest.mark.parametrize("point", IMPORT_POINTS)
def test_import_killed_then_rerun_equals_an_uninterrupted_import(world, clean_import, tmp_path, point):
    m = tmp_path / "m"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    r = killed("import", world.b2, "--mirror", m, at=point)
    reached = r.returncode == -signal.SIGKILL
    # pages never name a file that is not there, even right after the kill
    for page in (m / "pypi/simple").glob("*/index.html") if (m / "pypi/simple").exists() else []:
        for line in page.read_text().splitlines():
            if 'href="../../files/' in line:
                assert (m / "pypi/files" / line.split('href="../../files/')[1].split("#")[0]).exists()
    r2 = cli("import", world.b2, "--mirror", m)
    assert r2.code in ((0, 5) if reached else (5,)), r2.err
    assert public(m) == clean_import
    assert not any((m / ".gapsync/staging").iterdir())  # the re-run also cleaned the killed run's scratch space
    assert cli("import", world.b2, "--mirror", m).code == 5


@pytest.mark.parametrize("point", ["fetch.chunk:1", "create.wrote-blob:1", "create.wrote-blob:5"])
def test_create_killed_leaves_no_bundle_and_rerun_reuses_the_cache(world, tmp_path, point):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", world.index.url, ["alpha", "gamma", "native"])
    r = killed("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
               "--cache", tmp_path / "c", at=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not list((tmp_path / "o").glob("*.gapsync")) if (tmp_path / "o").exists() else True
    assert not (ch.state / "prod/targets.json").exists()  # the channel did not advance
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "o",
            "--cache", tmp_path / "c", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["version"] == 1
    if point.startswith("create."):
        assert doc["downloaded_bytes"] == 0  # everything was in the cache already
    assert not list((tmp_path / "o").glob("*.partial"))
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    assert cli("import", Path(doc["bundle"]), "--mirror", m).code == 0


def test_concurrent_imports_are_serialized(world, tmp_path):
    """A second import while one runs waits for the lock (up to 5 s) and then refuses clearly."""
    from gapsync.locking import exclusive

    m = tmp_path / "m"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    with exclusive(m / ".gapsync/lock", "held by the test"):
        r = cli("import", world.b2, "--mirror", m)
    assert r.code == 1 and "in use by another gapsync process" in r.err and str(os.getpid()) in r.err
    assert cli("import", world.b2, "--mirror", m).code == 0
