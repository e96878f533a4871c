"""``bundle create --no-cache`` (issue 21): the model files that download go into the bundle
only, written once, never into the cache (as ``pip --no-cache-dir``): a 140 GB model then needs
140 GB on the DMZ, not 280, and a cold create writes each byte once, as ``snapshot_download``
does. The model scanner reads the files back from the bundle being written
(``fsutil.open_blob`` of a ``fsutil.HeldPath``); any other reader that is handed such a blob
must fail, never read another file's bytes. What comes out must be the bundle a cached create
makes, and every way the body cannot be used must end in that bundle or in none."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from gapsync import fsutil
from gapsync.errors import GapsyncError
from tests.support.channels import new_channel
from tests.support.cli import cli
from tests.support.model_shards import (
    REPO,
    SHARDS,
    disk_full_after,
    kill_then_rerun,
    members,
    shard,
    shard_digests,
    spec_for,
)
from tests.support.models import GITATTRIBUTES, WRONG_SHA, FakeHub, config_json, write_repo

EVIL = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94."


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("nocache-hub") / "root"
    files = {".gitattributes": GITATTRIBUTES, "config.json": config_json()}
    files.update({name: shard(n, i + 1) for i, (name, n) in enumerate(SHARDS.items())})
    write_repo(root, REPO, {"main": files})
    # a pickle that runs os.system, 200 times over so that it is large enough to be an LFS file
    write_repo(root, "team/evil", {"main": {".gitattributes": GITATTRIBUTES, "pytorch_model.bin": EVIL * 200}})
    with FakeHub(root) as h:
        yield h


def cached_digests(cache: Path) -> set[str]:
    return {p.name for p in (cache / "sha256").rglob("*") if p.is_file()} if cache.exists() else set()


def run(base: Path, spec: Path, *extra, ch=None):
    ch = ch or new_channel(base, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", base / "out",
            "--cache", base / "cache", "--json", *extra)
    return ch, r


def test_no_cache_writes_the_model_into_the_bundle_only(hub, tmp_path, minisign_bin):
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    ch, r = run(tmp_path, spec, "--no-cache")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    bundle = Path(doc["bundle"])
    shards = shard_digests(hub)
    assert doc["blobs_not_cached"] == len(SHARDS) == doc["blobs_written_while_downloading"]
    assert doc["downloaded_bytes"] >= sum(SHARDS.values())
    # not in the cache, not left as a partial download either; the small files are cached
    assert not shards & cached_digests(tmp_path / "cache")
    assert cached_digests(tmp_path / "cache")
    assert list((tmp_path / "cache" / "partial").iterdir()) == []
    # the bundle: every shard with its bytes, verified by the stock minisign and imported
    got = members(bundle)
    assert {f"blobs/sha256/{d}" for d in shards} <= set(got)
    v = subprocess.run([minisign_bin, "-Vm", str(bundle), "-p", str(ch.pub[0])], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    mirror = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    imp = cli("import", bundle, "--mirror", mirror)
    assert imp.code == 0, imp.err
    landed = {hashlib.sha256(p.read_bytes()).hexdigest() for p in mirror.rglob("*.safetensors") if p.is_file()}
    assert shards <= landed
    # the scan saw the files (bundle.json lists their formats and sizes as for a cached create)
    with_cache = tmp_path / "with-cache"
    _, r2 = run(with_cache, spec)
    assert r2.code == 0, r2.err
    doc2 = json.loads(r2.out)
    assert doc2["blobs_not_cached"] == 0
    assert shards <= cached_digests(with_cache / "cache")
    assert doc["artifacts"] == doc2["artifacts"]
    # the next run downloads them again (that is what --no-cache means), and makes the same blobs
    ch3 = new_channel(tmp_path / "again", "prod")
    r3 = cli("bundle", "create", "-f", spec, "--state", ch3.state, "--key", ch3.keys[0], "-o", tmp_path / "out3",
             "--cache", tmp_path / "cache", "--json", "--no-cache")
    assert r3.code == 0, r3.err
    assert json.loads(r3.out)["blobs_not_cached"] == len(SHARDS)
    assert {f"blobs/sha256/{d}" for d in shards} <= set(members(Path(json.loads(r3.out)["bundle"])))


def test_the_model_scanner_reads_the_held_files_and_blocks_a_malicious_pickle(hub, tmp_path):
    """The pickle's bytes exist only in the bundle's body: the scanner must still find os.system
    there, and the policy must block it; no bundle, and the bytes are not kept anywhere."""
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: evil\nchannel: prod\nmodels:\n  - hf: team/evil\n    revision: main\n    endpoint: {hub.url}\n")
    _, r = run(tmp_path, spec, "--no-cache")
    assert r.code == 4, r.err
    assert "team/evil" in r.err and "os.system" in r.err, r.err  # what the pickle calls: its bytes were read
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert hashlib.sha256(EVIL * 200).hexdigest() not in cached_digests(tmp_path / "cache")


def test_allow_partial_with_a_blocked_model_keeps_what_is_carried_in_the_cache(hub, tmp_path, minisign_bin):
    """--allow-partial: the body holds a blocked blob, so it cannot become the bundle; the held
    shards are then stored in the cache after all (hashed again on the way) and the bundle is
    written from there, without the blocked model."""
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: two\nchannel: prod\nmodels:\n  - hf: {REPO}\n    revision: main\n    endpoint: {hub.url}\n"
                    f"  - hf: team/evil\n    revision: main\n    endpoint: {hub.url}\n")
    ch, r = run(tmp_path, spec, "--no-cache", "--allow-partial")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["blobs_written_while_downloading"] == 0 and doc["blobs_not_cached"] == 0
    got = members(Path(doc["bundle"]))
    evil = hashlib.sha256(EVIL * 200).hexdigest()
    assert f"blobs/sha256/{evil}" not in got
    assert {f"blobs/sha256/{d}" for d in shard_digests(hub)} <= set(got)
    assert shard_digests(hub) <= cached_digests(tmp_path / "cache")
    assert evil not in cached_digests(tmp_path / "cache")
    v = subprocess.run([minisign_bin, "-Vm", doc["bundle"], "-p", str(ch.pub[0])], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr


def test_no_cache_is_refused_where_the_bundle_cannot_be_written_while_downloading(hub, tmp_path, monkeypatch):
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    _, r = run(tmp_path / "v", spec, "--no-cache", "--max-volume-size", "64MiB")
    assert r.code != 0 and "--no-cache" in r.err and "--max-volume-size" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not cached_digests(tmp_path / "v" / "cache") & shard_digests(hub)  # refused before anything downloaded
    monkeypatch.setenv("GAPSYNC_WRITE_WHILE_DOWNLOADING", "0")
    _, r = run(tmp_path / "w", spec, "--no-cache")
    assert r.code != 0 and "GAPSYNC_WRITE_WHILE_DOWNLOADING=0" in r.err, r.err
    monkeypatch.delenv("GAPSYNC_WRITE_WHILE_DOWNLOADING")
    # an output directory that cannot be one (a dangling link stands there): refused, naming it,
    # nothing downloaded, nothing created where the link points
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "out").symlink_to(tmp_path / "elsewhere")
    _, r = run(tmp_path / "t", spec, "--no-cache")
    assert r.code == 2 and "cannot write the bundle there" in r.err and str(tmp_path / "t" / "out") in r.err, r.err
    assert not cached_digests(tmp_path / "t" / "cache") & shard_digests(hub)
    assert not (tmp_path / "elsewhere").exists()


def test_bad_bytes_with_no_cache_leave_nothing(tmp_path):
    root = tmp_path / "hub" / "root"
    write_repo(root, REPO, {"main": {".gitattributes": GITATTRIBUTES, "config.json": config_json(),
                                     "model.safetensors": shard(2 << 20, 1)}})
    with FakeHub(root, mode=WRONG_SHA) as h:
        spec = spec_for(tmp_path / "g.yaml", h.url)
        _, r = run(tmp_path, spec, "--no-cache")
    assert r.code != 0
    assert "sha256" in r.err or "does not match" in r.err, r.err
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "cache" / "partial").iterdir()) == []


def test_killed_while_downloading_with_no_cache_then_the_rerun_finishes(hub, tmp_path, minisign_bin):
    """No partial download to resume: the re-run downloads the shards again, into the bundle only."""
    kill_then_rerun(hub, tmp_path, minisign_bin, "--no-cache")
    assert not shard_digests(hub) & cached_digests(tmp_path / "cache")


def test_a_failed_write_into_the_body_fails_the_download(hub, tmp_path, monkeypatch):
    """The body is the only copy: a write that fails (disk full) must fail the run, naming the
    file, not leave a bundle without the blob or a blob nowhere."""
    from gapsync.bundle.keys import load_signing_key
    from gapsync.bundler import cache as cache_mod
    from gapsync.bundler.create import ScanOptions, create_bundle

    spec = spec_for(tmp_path / "g.yaml", hub.url)
    ch = new_channel(tmp_path, "prod")
    disk_full_after(monkeypatch, 3)
    with pytest.raises(GapsyncError, match="could not be written into the bundle .*No space left"):
        create_bundle(spec, None, Path(ch.state), [load_signing_key(Path(ch.keys[0]), None)], tmp_path / "out",
                      cache_mod.BlobCache(tmp_path / "cache"), jobs=2, scan=ScanOptions(no_cache=True))
    assert not (tmp_path / "out").exists()
    assert not shard_digests(hub) & cached_digests(tmp_path / "cache")


# -- the held path itself --------------------------------------------------------------------------

def _held(tmp_path: Path, before: bytes, data: bytes, after: bytes) -> fsutil.HeldPath:
    f = tmp_path / "body"
    f.write_bytes(before + data + after)
    fd = os.open(f, os.O_RDONLY)
    return fsutil.held_path("body#blob", lambda n, off: os.pread(fd, n, off), len(before), len(data))


def test_a_held_blob_reads_exactly_its_range(tmp_path):
    data = os.urandom(3 << 20)
    held = _held(tmp_path, b"B" * 4097, data, b"A" * 5000)
    with fsutil.open_blob(held) as f:
        assert f.read() == data
        assert f.read(10) == b""
        assert f.seek(0, os.SEEK_END) == len(data)
        f.seek(len(data) - 3)
        assert f.read(100) == data[-3:]
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:]
        f.seek(7)
        assert f.tell() == 7 and f.read(5) == data[7:12]
        f.seek(len(data) + 100)
        assert f.read(1) == b""
        with pytest.raises(OSError):
            f.seek(-1)


def test_a_held_blob_refuses_every_reader_that_takes_a_path(tmp_path):
    """Fail closed: a reader not written for held blobs gets an error, never another file's bytes."""
    import zipfile

    held = _held(tmp_path, b"", b"PK\x03\x04" + os.urandom(100), b"")
    assert str(held) == "body#blob"
    for use in (lambda: open(held, "rb"), lambda: os.stat(held), held.stat, held.is_file, held.read_bytes,
                lambda: zipfile.ZipFile(held), lambda: fsutil.open_regular(held), lambda: os.fspath(held)):
        with pytest.raises(GapsyncError, match="held in the bundle being written"):
            use()


def test_a_held_blob_cannot_be_read_once_the_body_is_closed(tmp_path):
    from gapsync.bundle.archive import BundleBody

    body = BundleBody(tmp_path / "b.gapsync", 1_700_000_000)
    data = os.urandom(5000)
    slot = body.slot(hashlib.sha256(data).hexdigest(), len(data))
    slot.write(data)
    with pytest.raises(ValueError, match="not complete"):
        slot.held_path()
    slot.finish()
    held = slot.held_path()
    with fsutil.open_blob(held) as f:
        assert f.read() == data
    body.abort()
    with pytest.raises(GapsyncError, match="closed"):
        with fsutil.open_blob(held) as f:
            f.read()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lie", ["tampered", "truncated", "oversize"])
def test_a_held_download_from_a_lying_server_is_refused_and_kept_nowhere(tmp_path, lie):
    """``--no-cache``'s download (``fetch._fetch_held``) against a real HTTP server whose bytes do
    not match what was announced: other bytes, fewer, more. Refused, naming the file; the
    member in the body never gets a byte past its size and does not count as complete; nothing
    in the cache, no partial download."""
    from gapsync.bundle.archive import BundleBody
    from gapsync.bundler.cache import BlobCache
    from gapsync.bundler.fetch import FetchItem, fetch_all
    from gapsync.errors import DigestMismatchError
    from tests.support.servers import static_server

    good = os.urandom(300_000)
    served = {"tampered": good[:-1] + b"x", "truncated": good[:-1000], "oversize": good + b"extra"}[lie]
    root = tmp_path / "srv"
    (root / "files").mkdir(parents=True)
    (root / "simple").mkdir()
    (root / "files" / "model.bin").write_bytes(served)
    out = tmp_path / "out"
    out.mkdir()
    body = BundleBody(out / "b.gapsync", 1_700_000_000)
    slots = []

    class Tee:  # what bundle create's tee does for a held blob, without its lanes
        def __call__(self, item):
            slot = body.slot(item.sha256, item.size)
            slot.held = True
            slots.append(slot)
            return slot

        def lane(self, item):
            return contextlib.nullcontext()

        def ordered(self, item):
            return False

    tee = Tee()

    cache = BlobCache(tmp_path / "cache")
    digest = hashlib.sha256(good).hexdigest()
    srv = static_server(root)
    try:
        url = srv.url.replace("/simple/", "/files/model.bin")
        with pytest.raises(DigestMismatchError, match="model.bin"):
            fetch_all(cache, [FetchItem(url, digest, len(good), "model.bin")], tee=tee)
    finally:
        srv.stop()
    [slot] = slots
    assert slot.written <= len(good) and not slot.complete
    assert "did not finish" in body.usable({digest: len(good)})
    assert not cache.has(digest) and digest not in cache.held()
    assert list((tmp_path / "cache" / "partial").iterdir()) == []
    body.abort()
    assert list(out.iterdir()) == []
