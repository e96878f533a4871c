"""A cold ``bundle create`` writes each blob into the bundle while it downloads (issue 21): the
download also writes the bytes into a member at the end of the bundle's body, the metadata and
the blobs that did not download are inserted in front afterwards (``fallocate`` INSERT_RANGE),
and the file is hashed once for its signature. What comes out must be a bundle like any other
(the stock ``minisign`` and the importer accept it, the same members as the writer that works
from the cache), and every way the body cannot be used (a blocked artifact, a file system that
cannot insert, a failed write, a bad download, a kill) must end in the usual bundle or in no
bundle at all, never in a half-made one."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from gapsync import fsutil, hashing
from gapsync.bundle.archive import BLOCK, BundleBody, BundleReader, BundleWriter, member_header
from gapsync.fsutil import UnsafeFileError
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


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream-hub") / "root"
    files = {".gitattributes": GITATTRIBUTES, "config.json": config_json()}
    files.update({name: shard(n, i + 1) for i, (name, n) in enumerate(SHARDS.items())})
    write_repo(root, REPO, {"main": files})
    with FakeHub(root) as h:
        yield h


def create(base: Path, spec: Path, *extra: str, ch=None, out: str = "out") -> tuple[object, dict, Path]:
    ch = ch or new_channel(base, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", base / out,
            "--cache", base / "cache", "--json", *extra)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    return ch, doc, Path(doc["bundle"])


def blob_offsets(bundle: Path) -> dict[str, int]:
    """Where each blob member's header starts in the file."""
    with BundleReader(bundle) as r:
        return {m.digest: m._info.offset for m in r.iter_blobs()}


def test_a_cold_create_writes_the_shards_while_they_download(hub, tmp_path, minisign_bin, monkeypatch):
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    ch, doc, bundle = create(tmp_path / "a", spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS)
    # the stock minisign accepts the file the signature was computed over
    v = subprocess.run([minisign_bin, "-Vm", str(bundle), "-p", str(ch.pub[0])], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    # the body (the shards, in the order their downloads started) begins on a block boundary,
    # right after the head, and bundle.json was padded with JSON whitespace to get there
    offsets = blob_offsets(bundle)
    shards = shard_digests(hub)
    head = min(offsets[d] for d in shards)
    assert head % 4096 == 0
    assert all(offsets[d] >= head for d in shards) and all(o < head for d, o in offsets.items() if d not in shards)
    with BundleReader(bundle) as r:
        first = next(iter(r.iter_blobs()))
        info = b"".join(r.chunks(first))
    assert json.loads(info)["channel"] == "prod"
    # the same bundle, member for member (but bundle.json's padding), as the writer that copies from the cache
    monkeypatch.setenv("GAPSYNC_WRITE_WHILE_DOWNLOADING", "0")
    _, doc2, bundle2 = create(tmp_path / "b", spec)
    assert doc2["blobs_written_while_downloading"] == 0
    got, want = members(bundle), members(bundle2)
    blobs = {n for n in got if n.startswith("blobs/")}
    blobs2 = {n for n in want if n.startswith("blobs/")}
    # bundle.json and the SBOM differ (their time, and the padding); every other blob is the same
    assert len(blobs) == len(blobs2) and len(blobs ^ blobs2) <= 4
    assert {f"blobs/sha256/{d}" for d in shards} <= blobs & blobs2
    assert sorted(n for n in got if n.startswith("metadata/")) == sorted(n for n in want if n.startswith("metadata/"))
    # and it imports: every file of the model lands in the Hugging Face cache with its bytes
    mirror = tmp_path / "mirror"
    assert cli("trust", "pin", ch.root, "--mirror", mirror).code == 0
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code == 0, r.err
    landed = {hashlib.sha256(p.read_bytes()).hexdigest() for p in mirror.rglob("*.safetensors") if p.is_file()}
    assert shards <= landed


def test_bundle_json_is_padded_until_the_head_is_whole_blocks(hub, tmp_path, minisign_bin):
    """The policy travels in the head: policies of other lengths give the head other sizes, and
    each time it ends on a block boundary, by trailing whitespace in bundle.json where it did not
    already, and the file still verifies."""
    import gapsync.policies

    default = (Path(gapsync.policies.__file__).parent / "default.yaml").read_text()
    padded = 0
    for i in range(4):
        policy = tmp_path / f"policy{i}.yaml"
        policy.write_text(default + f"# {'x' * 700 * i}\n")
        spec = spec_for(tmp_path / f"g{i}.yaml", hub.url)
        ch, doc, bundle = create(tmp_path / str(i), spec, "--policy", str(policy))
        assert doc["blobs_written_while_downloading"] == len(SHARDS)
        offsets = blob_offsets(bundle)
        assert min(offsets[d] for d in shard_digests(hub)) % 4096 == 0
        with BundleReader(bundle) as r:
            info = b"".join(r.chunks(next(iter(r.iter_blobs()))))
        assert json.loads(info)["channel"] == "prod"
        v = subprocess.run([minisign_bin, "-Vm", str(bundle), "-p", str(ch.pub[0])], capture_output=True, text=True)
        assert v.returncode == 0, v.stderr
        padded += info.endswith(b" ")
    assert padded >= 2


def test_auto_writes_while_downloading_only_what_fits_unflushed(hub, tmp_path, monkeypatch):
    """Unset, the bundle is written while downloading only when what downloads fits in what the
    kernel holds unflushed; beyond that, after the download (measured faster when the disk sets
    the pace). "1" always, "0" never."""
    import gapsync.bundler.create as create_mod

    spec = spec_for(tmp_path / "g.yaml", hub.url)
    total = sum(SHARDS.values())
    assert hashing.dirty_budget() > 0  # this Linux's vm.dirty_bytes or vm.dirty_ratio of the memory
    monkeypatch.setattr(create_mod, "dirty_budget", lambda: total - 1)  # the downloads do not quite fit
    _, doc, bundle = create(tmp_path / "small", spec)
    assert doc["blobs_written_while_downloading"] == 0
    assert sorted(p.name for p in (tmp_path / "small" / "out").iterdir()) == sorted([bundle.name, bundle.name + ".minisig"])
    monkeypatch.setenv("GAPSYNC_WRITE_WHILE_DOWNLOADING", "1")
    _, doc, _ = create(tmp_path / "forced", spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS)
    monkeypatch.delenv("GAPSYNC_WRITE_WHILE_DOWNLOADING")
    monkeypatch.setattr(create_mod, "dirty_budget", lambda: total + (64 << 20))  # the shards and the small files
    _, doc, _ = create(tmp_path / "fits", spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS)


def test_a_warm_create_and_a_file_system_without_insert_write_after_the_download(hub, tmp_path, monkeypatch):
    spec = spec_for(tmp_path / "g.yaml", hub.url)
    _, doc, _ = create(tmp_path, spec)
    assert doc["blobs_written_while_downloading"] == len(SHARDS)
    # everything cached: nothing downloads, the usual writer copies from the cache
    ch2 = new_channel(tmp_path / "ch2", "prod")
    _, doc, bundle = create(tmp_path, spec, ch=ch2, out="out2")
    assert doc["blobs_written_while_downloading"] == 0
    members(bundle)
    # a file system that cannot insert a range (tmpfs, NFS): found by the probe, the bundle is
    # written after the download, and the probe leaves no file behind
    monkeypatch.setattr(fsutil, "_INSERT_BLOCK", {})

    def refuse(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(fsutil, "insert_range", refuse)
    base = tmp_path / "c"
    _, doc, bundle = create(base, spec)
    assert doc["blobs_written_while_downloading"] == 0
    members(bundle)
    assert sorted(p.name for p in (base / "out").iterdir()) == sorted([bundle.name, bundle.name + ".minisig"])


def test_a_blocked_artifact_falls_back_to_the_writer_and_is_not_carried(hub, tmp_path):
    """--allow-partial with a blocked model whose blobs were written into the body while they
    downloaded: the body is given up, the bundle is written from the cache without them."""
    root = hub.root
    evil = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94."
    write_repo(root, "team/evil", {"main": {".gitattributes": GITATTRIBUTES, "pytorch_model.bin": evil * 200}})
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: two\nchannel: prod\nmodels:\n  - hf: {REPO}\n    revision: main\n    endpoint: {hub.url}\n"
                    f"  - hf: team/evil\n    revision: main\n    endpoint: {hub.url}\n")
    ch = new_channel(tmp_path, "prod")
    r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
            "--cache", tmp_path / "cache")
    assert r.code != 0 and "team/evil" in r.err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    _, doc, bundle = create(tmp_path, spec, "--allow-partial", ch=ch)
    assert doc["blobs_written_while_downloading"] == 0
    got = members(bundle)
    assert hashlib.sha256(evil * 200).hexdigest() not in {n.rsplit("/", 1)[1] for n in got}
    assert {f"blobs/sha256/{d}" for d in shard_digests(hub)} <= set(got)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([bundle.name, bundle.name + ".minisig"])


def test_bad_bytes_from_the_hub_leave_no_bundle_and_no_partial(tmp_path):
    root = tmp_path / "hub" / "root"
    files = {".gitattributes": GITATTRIBUTES, "config.json": config_json(),
             "model.safetensors": shard(2 << 20, 1)}
    write_repo(root, REPO, {"main": files})
    with FakeHub(root, mode=WRONG_SHA) as h:
        spec = spec_for(tmp_path / "g.yaml", h.url)
        ch = new_channel(tmp_path, "prod")
        r = cli("bundle", "create", "-f", spec, "--state", ch.state, "--key", ch.keys[0], "-o", tmp_path / "out",
                "--cache", tmp_path / "cache")
    assert r.code != 0
    assert "sha256" in r.err or "does not match" in r.err, r.err
    out = tmp_path / "out"
    assert not out.exists()  # not even the directory the body was written in


def test_killed_while_downloading_then_the_rerun_finishes(hub, tmp_path, minisign_bin):
    """SIGKILL in the middle of the downloads: the .partial body stays (no process can clean up
    after SIGKILL; no reader takes it for a bundle); the re-run removes it, resumes the partial
    downloads (those go in front, copied from the cache) and makes a bundle that verifies."""
    kill_then_rerun(hub, tmp_path, minisign_bin)


# -- the body itself ------------------------------------------------------------------------------

def _body(tmp_path: Path, blobs: list[bytes]) -> BundleBody:
    block = fsutil.insert_block(fsutil.Dir(tmp_path))
    assert block, "the test directory's file system cannot insert a range"
    body = BundleBody(tmp_path / "b.gapsync", 1_700_000_000, block)
    for data in blobs:
        slot = body.slot(hashlib.sha256(data).hexdigest(), len(data))
        assert slot is not None
        for i in range(0, len(data), 1000):
            slot.write(data[i:i + 1000])
        slot.finish()
    return body


def test_a_planted_link_at_the_partial_is_refused_before_a_byte_is_written(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (tmp_path / "b.gapsync.partial").symlink_to(victim)
    with pytest.raises(UnsafeFileError):
        BundleBody(tmp_path / "b.gapsync", 1_700_000_000, 4096)
    assert victim.read_bytes() == b"keep me"


def test_a_failed_write_makes_the_body_unusable_not_the_download(tmp_path, monkeypatch):
    data = os.urandom(5000)
    disk_full_after(monkeypatch, 2)
    body = _body(tmp_path, [data])
    assert body.usable({hashlib.sha256(data).hexdigest(): len(data)}) == \
        "cannot write the bundle beside the download (No space left on device)"
    body.abort()
    assert list(tmp_path.iterdir()) == []


def test_the_body_is_only_usable_for_exactly_the_blobs_carried(tmp_path):
    a, b = os.urandom(3000), os.urandom(70)
    body = _body(tmp_path, [a, b])
    da, db = hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()
    assert body.usable({da: len(a), db: len(b)}) is None
    assert "not carried" in body.usable({da: len(a)})
    assert "not carried" in body.usable({da: len(a), db: len(b) + 1})
    partial = body.slot(hashlib.sha256(b"x" * 10).hexdigest(), 10)
    partial.write(b"x" * 5)
    partial.finish()
    assert "did not finish" in body.usable({da: len(a), db: len(b), hashlib.sha256(b"x" * 10).hexdigest(): 10})
    assert body.slot(da, len(a)) is None  # one member per blob
    body.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_head_that_is_not_whole_blocks_is_refused_and_leaves_nothing(tmp_path):
    body = _body(tmp_path, [os.urandom(100)])
    with pytest.raises(ValueError, match="whole number"):
        BundleWriter(tmp_path / "b.gapsync", 1_700_000_000, body=body, head=4096 + BLOCK)
    assert list(tmp_path.iterdir()) == []


def test_writer_around_a_body_makes_the_canonical_archive(tmp_path):
    """The head inserted in front of the body, then the end: the strict reader accepts it, the
    returned digest is the BLAKE2b of the whole file, and the members are where the writer put them."""
    blobs = [os.urandom(n) for n in (1, 511, 513, 70_000)]
    body = _body(tmp_path, blobs)
    meta = {"1.root.json": b'{"signed": {}}', "targets.json": b'{"signed": {"targets": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}}}'}
    head_blob = os.urandom(8192 - 4 * BLOCK - BLOCK - 3)  # two metadata members of two blocks, a header: 8192
    cached = tmp_path / "cached"
    cached.write_bytes(head_blob)
    from gapsync.bundle.volumes import head_size
    from gapsync.model import BlobRef

    head = head_size(meta, [len(head_blob)])
    assert head % 4096 == 0, head
    w = BundleWriter(tmp_path / "b.gapsync", 1_700_000_000, body=body, head=head)
    for name, data in meta.items():
        w.add_metadata(name, data)
    w.add_blob(BlobRef(hashlib.sha256(head_blob).hexdigest(), len(head_blob)), cached)
    digest = w.close()
    raw = (tmp_path / "b.gapsync").read_bytes()
    assert digest == hashlib.blake2b(raw).digest()
    assert raw[head:head + BLOCK] == member_header(f"blobs/sha256/{hashlib.sha256(blobs[0]).hexdigest()}", 1, 1_700_000_000)
    got = members(tmp_path / "b.gapsync")
    assert {n.rsplit("/", 1)[1] for n in got if n.startswith("blobs/")} == \
        {hashlib.sha256(b).hexdigest() for b in [*blobs, head_blob]}
    assert not (tmp_path / "b.gapsync.partial").exists()
