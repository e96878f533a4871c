"""The content-addressed cache and the downloader: once, verified, resumed, never under a wrong name."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem, fetch_all
from tests.support.channels import new_channel, write_spec
from tests.support.cli import cli
from tests.support.servers import Server, free_port, static_server
from tests.support.wheels import write_index


def test_second_create_downloads_nothing_and_shared_wheel_is_carried_once(world, tmp_path):
    import re

    wheels = re.compile(r"^GET /files/\S+\.whl ", re.M)  # uv may revalidate pages and .metadata; no wheel may come again
    log_before = len(wheels.findall(world.index.log.read_text()))
    r = cli("bundle", "create", "-f", world.spec2, "--state", world.state, "--key", world.keys[0], "-o", tmp_path,
            "--cache", world.base / "cache", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["downloaded_bytes"] == 0
    assert len(wheels.findall(world.index.log.read_text())) == log_before
    cache_files = list((world.base / "cache/sha256").rglob("*"))
    digests = [p.name for p in cache_files if p.is_file()]
    assert len(digests) == len(set(digests))


def test_upstream_serving_other_bytes_is_refused_and_nothing_cached(ext_index, tmp_path):
    victim = "alpha-1.0-py3-none-any.whl"
    liar = static_server(ext_index.root, "--lie", victim)
    try:
        ch = new_channel(tmp_path, "prod")
        spec = write_spec(tmp_path / "g.yaml", liar.url, ["alpha"])
        r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
                "--cache", tmp_path / "cache")
    finally:
        liar.stop()
    assert r.code == 3 and victim in r.err and "does not match" in r.err
    good = hashlib.sha256((ext_index.root / "files" / victim).read_bytes()).hexdigest()
    cache = BlobCache(tmp_path / "cache")
    assert not cache.has(good)
    assert not list((tmp_path / "cache/partial").iterdir())  # the lying bytes were thrown away
    assert not list(tmp_path.rglob("*.gapsync*"))  # no bundle, not even a partial one
    assert sorted(p.name for p in (ch.state / "prod").glob("*.json")) == ["1.root.json"]  # channel did not advance
    entries = [json.loads(x) for x in (ch.state / "audit.log").read_text().splitlines()]
    assert entries[-1]["action"] == "bundle.create" and entries[-1]["result"] == "error"


def test_interrupted_download_resumes_with_range(tmp_path):
    root = tmp_path / "srv"
    (root / "files").mkdir(parents=True)
    (root / "simple").mkdir()
    data = bytes(range(256)) * 4096  # 1 MiB
    (root / "files/blob.bin").write_bytes(data)
    log = tmp_path / "log"
    srv = static_server(root, "--log", str(log))
    try:
        cache = BlobCache(tmp_path / "cache")
        digest = hashlib.sha256(data).hexdigest()
        cache.partial_path(digest).write_bytes(data[:300_000])  # what a killed run left
        url = srv.url.replace("/simple/", "/files/blob.bin")
        [res] = fetch_all(cache, [FetchItem(url, digest, len(data), "blob.bin")])
    finally:
        srv.stop()
    assert res.sha256 == digest and res.downloaded == len(data) - 300_000
    assert "range=bytes=300000-" in log.read_text()
    assert cache.path(digest).read_bytes() == data


def test_index_without_hashes_is_pinned_by_downloading(ext_index, tmp_path):
    root = tmp_path / "nohash"
    shutil.copytree(ext_index.root / "files", root / "files")
    write_index(root, hashes=False)
    srv = static_server(root)
    try:
        spec = write_spec(tmp_path / "g.yaml", srv.url, ["alpha"], pythons=("3.11",))
        r = cli("resolve", "-f", spec, "-o", tmp_path / "lock", "--cache", tmp_path / "cache")
    finally:
        srv.stop()
    assert r.code == 0, r.err
    files = json.loads((tmp_path / "lock").read_text())["python"]["files"]
    for f in files:
        assert f["sha256"] == hashlib.sha256((root / "files" / f["filename"]).read_bytes()).hexdigest()
        assert BlobCache(tmp_path / "cache").has(f["sha256"])


def test_pypiserver_as_the_external_index(ext_index, tmp_path, mirror, world):
    """pypiserver: HTML only, no data-requires-python; the pipeline works the same."""
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    for f in ("alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "beta-2.0-py3-none-any.whl"):
        shutil.copy(ext_index.root / "files" / f, pkgs / f)
    port = free_port()
    server = Server([str(Path(sys.executable).with_name("pypi-server")), "run", "-i", "127.0.0.1",
                     "-p", str(port), "-a", ".", "-P", ".", "--disable-fallback", str(pkgs)],
                    f"http://127.0.0.1:{port}/simple/")
    try:
        spec = write_spec(tmp_path / "g.yaml", f"http://127.0.0.1:{port}/simple/", ["alpha"])
        r = cli("bundle", "create", "-f", spec, "--state", world.state, "--key", world.keys[0], "-o", tmp_path / "o",
                "--cache", tmp_path / "cache")
    finally:
        server.stop()
    assert r.code == 0, r.err
    bundle = next((tmp_path / "o").glob("*.gapsync"))
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code == 0, r.err
    assert (mirror / "pypi/files/beta-2.0-py3-none-any.whl").exists()
