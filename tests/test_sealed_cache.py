"""Sealed cache entries (issue 21): the cache seals what it verified (read-only, its modification
time set to a value only that digest has), and the bundle writer then copies it without hashing
it a second time with sha256. Every write through the file system breaks the seal, so the entry
is hashed again and refused if its bytes changed; the importer hashes every byte anyway."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gapsync import fsutil, hashing
from gapsync.bundle.archive import BundleReader, BundleWriter
from gapsync.bundler.cache import BlobCache
from gapsync.errors import DigestMismatchError
from gapsync.model import BlobRef


def _write(out: Path, blobs: list[tuple[BlobRef, Path]]) -> bytes:
    w = BundleWriter(out, mtime=1_700_000_000)
    try:
        w.add_metadata("1.root.json", b'{"signed": {}}')
        w.add_metadata("targets.json", b'{"signed": {"targets": {"a": 1, "b": 2, "c": 3}}}')
        for blob, src in blobs:
            w.add_blob(blob, src)
        return w.close()
    except BaseException:
        w.abort()
        raise


def _cached(cache: BlobCache, data: bytes) -> tuple[BlobRef, Path]:
    digest, size = cache.put_bytes(data, what="test blob")
    return BlobRef(digest, size), cache.path(digest)


@pytest.fixture
def checked(monkeypatch):
    """The sha256s the read-back was asked to check (one per region that has one)."""
    seen: list[str] = []
    real = hashing.ReadBackHash.region

    def region(self, end, *, sha256=None, message=""):
        if sha256:
            seen.append(sha256)
        return real(self, end, sha256=sha256, message=message)

    monkeypatch.setattr(hashing.ReadBackHash, "region", region)
    return seen


def test_a_stored_entry_is_sealed_and_copied_without_a_second_sha256(tmp_path, checked):
    cache = BlobCache(tmp_path / "cache")
    blobs = [_cached(cache, os.urandom(n)) for n in (1, 70_000, 5 << 20)]
    for blob, p in blobs:
        st = p.stat()
        assert hashing.is_sealed(st, blob.digest, blob.size), p
        assert st.st_mode & 0o777 == 0o444
    out = tmp_path / "b.gapsync"
    digest = _write(out, blobs)
    assert checked == []  # nothing hashed twice
    assert digest == hashlib.blake2b(out.read_bytes()).digest()  # the signature still covers every byte
    with BundleReader(out) as r:
        assert {m.digest: hashlib.sha256(b"".join(r.chunks(m))).hexdigest() for m in r.iter_blobs()} == {
            b.digest: b.digest for b, _ in blobs}


def test_the_seal_is_the_digest_s_own(tmp_path):
    """An entry that carries another entry's seal (``cp -p`` of a sealed file over it) is not sealed."""
    cache = BlobCache(tmp_path / "cache")
    (a, pa), (b, _pb) = _cached(cache, b"a" * 1000), _cached(cache, b"b" * 1000)
    assert hashing.seal_mtime_ns(a.digest) != hashing.seal_mtime_ns(b.digest)
    assert not hashing.is_sealed(pa.stat(), b.digest, b.size)


@pytest.mark.parametrize("edit", ["rewrite-chmod-back", "append-then-truncate", "touch-only", "writable"])
def test_a_sealed_entry_written_to_is_hashed_again_and_refused_if_changed(tmp_path, checked, edit):
    """A write through the file system breaks the seal (the time becomes now): the writer checks
    the sha256 again, and refuses the bundle when the bytes differ, naming the entry."""
    cache = BlobCache(tmp_path / "cache")
    blobs = [_cached(cache, os.urandom(n)) for n in (3000, 5 << 20, 70_000)]
    blob, p = blobs[1]
    data = bytearray(p.read_bytes())
    p.chmod(0o644)
    if edit == "rewrite-chmod-back":
        data[len(data) // 2] ^= 1
        p.write_bytes(bytes(data))
        p.chmod(0o444)
    elif edit == "append-then-truncate":
        with p.open("ab") as f:
            f.write(b"x")
            f.truncate(len(data))  # same size, same bytes, but written to: hashed again, and right
        p.chmod(0o444)
    elif edit == "touch-only":
        os.utime(p)
        p.chmod(0o444)
    out = tmp_path / "b.gapsync"
    if edit == "rewrite-chmod-back":
        with pytest.raises(DigestMismatchError, match=blob.digest):
            _write(out, blobs)
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    else:  # unsealed, so checked again; the bytes are right: carried
        _write(out, blobs)
        assert out.exists()
    assert checked == [blob.digest]  # only the entry whose seal broke, hashed again


def test_a_sealed_entry_written_to_while_it_is_copied_is_checked(tmp_path, monkeypatch, checked):
    """Changed during the copy itself (between the seal check before it and the one after): the
    bytes written are hashed on the read-back and the bundle is refused."""
    cache = BlobCache(tmp_path / "cache")
    blob, p = _cached(cache, os.urandom(3 << 20))
    real = fsutil.copy_range

    def copy_then_damage(src_fd, src_offset, dst, dst_offset, length):
        p.chmod(0o644)
        with p.open("r+b") as f:  # damaged before its bytes are copied: the copy takes them
            f.seek(1000)
            f.write(b"\xff" * 8)
        p.chmod(0o444)
        return real(src_fd, src_offset, dst, dst_offset, length)

    monkeypatch.setattr(fsutil, "copy_range", copy_then_damage)
    out = tmp_path / "b.gapsync"
    with pytest.raises(DigestMismatchError, match=blob.digest):
        _write(out, [(blob, p)])
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_bit_rot_under_a_kept_seal_is_caught_by_the_importer_s_hash(tmp_path, checked):
    """What the seal does not see (bytes changed with no write that sets the time: bit rot, or
    someone who restores the time on purpose, who could as well use the DMZ's key): the bundle is
    written, and the member's sha256 (which the importer checks against the signed one) does not
    match its name, so it never crosses (docs/threat-model.md)."""
    cache = BlobCache(tmp_path / "cache")
    blob, p = _cached(cache, os.urandom(200_000))
    st = p.stat()
    p.chmod(0o644)
    data = bytearray(p.read_bytes())
    data[7] ^= 0x40
    p.write_bytes(bytes(data))
    p.chmod(0o444)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = tmp_path / "b.gapsync"
    _write(out, [(blob, p)])
    with BundleReader(out) as r:
        m = next(r.iter_blobs())
        with pytest.raises(DigestMismatchError, match="does not match its name"):
            r.read_blob_bytes(m, 1 << 20)


def test_an_external_file_is_always_hashed(tmp_path, checked):
    """An operator's file (a path model) is never trusted on a seal, whatever its time and mode."""
    from gapsync.bundler.cache import ExternalPath

    data = os.urandom(10_000)
    digest = hashlib.sha256(data).hexdigest()
    p = tmp_path / "weights.bin"
    p.write_bytes(data)
    p.chmod(0o444)
    os.utime(p, ns=(0, hashing.seal_mtime_ns(digest)))
    ext = ExternalPath(p)
    st = p.stat()
    ext.expect = (st.st_size, st.st_mtime_ns)
    _write(tmp_path / "b.gapsync", [(BlobRef(digest, len(data)), ext)])
    assert checked == [digest]


def test_a_download_written_behind_is_byte_for_byte_and_sealed(tmp_path, monkeypatch):
    """The downloader asks the kernel to write each step to disk as it goes (``hashing.WriteBehind``):
    the cached bytes are the downloaded ones, and the entry is sealed."""
    monkeypatch.setattr(hashing.WriteBehind, "EVERY", 100_000)
    advised: list[tuple[int, int]] = []
    real = hashing.write_back
    monkeypatch.setattr(hashing, "write_back", lambda fd, off, n: (advised.append((off, n)), real(fd, off, n)))
    data = os.urandom(1_000_003)
    digest = hashlib.sha256(data).hexdigest()
    part = tmp_path / "p"
    with fsutil.open_partial(part, resume=False) as f:
        hashing.copy_verified((data[i:i + 65536] for i in range(0, len(data), 65536)), hashing.WriteBehind(f, 0),
                              what="x", sha256=digest, size=len(data))
    assert part.read_bytes() == data
    assert advised and advised[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(advised, advised[1:], strict=False))
    cache = BlobCache(tmp_path / "cache")
    entry = cache.adopt(part, digest)
    assert hashing.is_sealed(entry.stat(), digest, len(data))
