"""The bundle writer's fast paths (issue 21): blob bytes copied in the kernel, each hash computed
once over the written file (read back), and every check kept: a cache entry damaged after it was
sealed is refused, on every copy method (copy_file_range, sendfile, read/write)."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from gapsync import fsutil
from gapsync.bundler.bundle import BundleReader, BundleWriter
from gapsync.errors import DigestMismatchError
from gapsync.model import BlobRef

METHODS = [["copy_file_range", "sendfile", "readwrite"], ["sendfile", "readwrite"], ["readwrite"]]


@pytest.fixture
def methods(monkeypatch):
    def use(order: list[str]) -> None:
        monkeypatch.setattr(fsutil, "COPY_METHODS", list(order))
    return use


def _blob(d: Path, data: bytes) -> tuple[BlobRef, Path]:
    digest = hashlib.sha256(data).hexdigest()
    p = d / digest
    p.write_bytes(data)
    p.chmod(0o444)  # as the cache seals its entries
    return BlobRef(digest, len(data)), p


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


@pytest.mark.parametrize("order", METHODS, ids=lambda o: o[0])
def test_every_copy_method_writes_the_same_bundle(tmp_path, methods, order):
    methods(order)
    src = tmp_path / "src"
    src.mkdir()
    # sizes around the tar block and the read-back chunk, and one over a kernel copy step
    sizes = [0, 1, 511, 513, (4 << 20) + 7, fsutil.COPY_STEP + 4096]
    blobs = [_blob(src, os.urandom(n) if n < 1 << 20 else os.urandom(1 << 20) * (n >> 20) + os.urandom(n % (1 << 20)))
             for n in sizes]
    out = tmp_path / "b.gapsync"
    digest = _write(out, blobs)
    data = out.read_bytes()
    assert digest == hashlib.blake2b(data).digest()  # the signature covers every byte of the file
    with BundleReader(out) as r:
        got = {m.digest: hashlib.sha256(b"".join(r.chunks(m))).hexdigest() for m in r.iter_blobs()}
    assert got == {b.digest: b.digest for b, _ in blobs}
    assert not (tmp_path / "b.gapsync.partial").exists()


def test_copy_file_range_refused_falls_back(tmp_path, monkeypatch, methods):
    """A file system (or kernel) that refuses copy_file_range: sendfile takes over, same bytes."""
    methods(METHODS[0])
    calls = []

    def refuse(*a, **k):
        calls.append(a)
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    src = tmp_path / "src"
    src.mkdir()
    blobs = [_blob(src, os.urandom(100_000))]
    out = tmp_path / "b.gapsync"
    digest = _write(out, blobs)
    assert calls and fsutil.COPY_METHODS[0] == "sendfile"
    assert digest == hashlib.blake2b(out.read_bytes()).digest()


@pytest.mark.parametrize("order", METHODS, ids=lambda o: o[0])
@pytest.mark.parametrize("damage", ["flip", "truncate", "grow"])
def test_cache_entry_damaged_after_sealing_is_refused(tmp_path, methods, order, damage):
    """The sha256 is checked on the bytes written into the bundle: a sealed cache entry that
    changed afterwards (bit rot, a hand edit) never produces a bundle, whichever member it is."""
    methods(order)
    src = tmp_path / "src"
    src.mkdir()
    blobs = [_blob(src, os.urandom(n)) for n in (3000, 5 << 20, 70_000)]
    bad = blobs[1][1]
    bad.chmod(0o644)
    data = bytearray(bad.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 1
    elif damage == "truncate":
        data = data[:-1]
    else:
        data += b"x"
    bad.write_bytes(bytes(data))
    out = tmp_path / "b.gapsync"
    with pytest.raises(DigestMismatchError, match=blobs[1][0].digest):
        _write(out, blobs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no bundle, no .partial


def test_memory_stays_flat_while_reading_back(tmp_path):
    """The read-back stays at most ``max_lag`` behind: the writer waits for it (no queue of
    chunks in memory, only offsets)."""
    from gapsync.hashing import ReadBackHash

    p = tmp_path / "f"
    data = os.urandom(3 << 20)
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    try:
        h = ReadBackHash(fd, max_lag=1 << 20)
        h.region(1 << 20)
        h.region(2 << 20, sha256=hashlib.sha256(data[1 << 20:2 << 20]).hexdigest(), message="m")
        h.wait_lag()
        h.region(3 << 20, sha256="0" * 64, message="region three")
        with pytest.raises(DigestMismatchError, match="region three"):
            h.digest()
    finally:
        os.close(fd)
