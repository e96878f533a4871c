"""Volumes end to end: a bundle split for small media, imported volume by volume in any order
with repeats, gives the mirror a single bundle gives; a lost volume is rebuilt from parity."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli
from tests.support.servers import static_server
from tests.support.trees import snapshot
from tests.support.wheels import make_wheel, write_index


@pytest.fixture(scope="module")
def big_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("vol-index")
    for i in range(6):
        make_wheel(root / "files", f"pkg{i}", "1.0", payload=os.urandom(60_000))
    write_index(root)
    srv = static_server(root)
    yield srv.url
    srv.stop()


def pypi(m: Path) -> dict:
    return {k: v for k, v in snapshot(m).items() if k.startswith("pypi/")}


def test_volumes_import_in_any_order_and_repair(big_index, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", big_index, [f"pkg{i}" for i in range(6)], pythons=("3.11",))
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "c", "--max-volume-size", "200KB", "--parity", "1", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    volumes = [Path(v) for v in doc["volumes"]]
    assert len(volumes) >= 3 and len(doc["parity"]) == 1
    assert all(v.stat().st_size <= 200_000 for v in volumes)
    # the same content as one bundle, for comparison
    single = new_channel(tmp_path / "single", "prod")
    assert cli("bundle", "create", "-f", spec, "--state", single.state, "--key", single.keys[0], "-o", tmp_path / "one",
               "--cache", tmp_path / "c").code == 0
    m1 = tmp_path / "m1"
    assert cli("trust", "pin", single.root, "--mirror", m1).code == 0
    assert cli("import", next((tmp_path / "one").glob("*.gapsync")), "--mirror", m1).code == 0
    # each volume verifies alone; imported shuffled and with repeats they give the same index
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    for v in volumes:
        assert cli("bundle", "verify", v, "--mirror", m).code == 0
    order = volumes[::-1] + [volumes[1], volumes[0]]
    random.Random(7).shuffle(order)
    pending = None
    for v in order:
        r = cli("import", v, "--mirror", m, "--json")
        assert r.code in (0, 5), r.err
        if r.code == 0:
            pending = json.loads(r.out)["pending"]
    assert pending == []
    assert pypi(m) == pypi(m1)
    assert cli("import", volumes[0], "--mirror", m).code == 5
    # a lost volume is rebuilt from the parity volume, byte for byte
    lost = volumes[1]
    keep = lost.read_bytes()
    lost.unlink()
    r = cli("bundle", "repair", tmp_path / "out")
    assert r.code == 0, r.err
    assert lost.read_bytes() == keep
    # two lost with one parity volume: refused
    volumes[0].unlink()
    volumes[2].unlink()
    assert cli("bundle", "repair", tmp_path / "out").code == 3


def test_partial_volume_set_publishes_only_complete_artifacts(big_index, tmp_path):
    ch = new_channel(tmp_path, "prod")
    spec = write_spec(tmp_path / "g.yaml", big_index, [f"pkg{i}" for i in range(6)], pythons=("3.11",))
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "c", "--max-volume-size", "200KB", "--json")
    volumes = [Path(v) for v in json.loads(r.out)["volumes"]]
    m = tmp_path / "m"
    assert cli("trust", "pin", ch.root, "--mirror", m).code == 0
    seen_partial, pending = False, ["?"]
    for v in volumes:  # after every volume: what is published is complete, pages name only files that exist
        r = cli("import", v, "--mirror", m, "--json")
        assert r.code in (0, 5), r.err
        pending = json.loads(r.out)["pending"] if r.code == 0 else pending
        seen_partial |= 0 < len(pending) < 6
        files = m / "pypi/files"
        published = {p.name.split("-")[0] for p in files.iterdir() if p.suffix == ".whl"} if files.exists() else set()
        assert {f"python:{n}@1.0" for n in published}.isdisjoint(pending)
        for n in published:
            assert (files / f"{n}-1.0-py3-none-any.whl.metadata").exists()
        for page in (m / "pypi/simple").glob("*/index.html"):
            for line in page.read_text().splitlines():
                if 'href="../../files/' in line:
                    assert (files / line.split('href="../../files/')[1].split("#")[0]).exists()
    assert seen_partial and pending == []
    shutil.rmtree(tmp_path / "c")
