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
from gapsync.bundle.archive import BundleReader, BundleWriter
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


# -- path models: no second copy, and a file changed between resolve and write is refused ------

def _path_model(tmp_path: Path):
    from tests.support.channels import new_channel
    from tests.support.cli import cli

    src = tmp_path / "model-src"
    src.mkdir()
    (src / "config.json").write_bytes(b'{"model_type": "t"}\n')
    (src / "weights.bin").write_bytes(os.urandom(300_000))
    spec = tmp_path / "gapsync.yaml"
    spec.write_text(f"name: t\nchannel: prod\nmodels:\n  - {{path: {src}, name: team/m1}}\n")
    lock = tmp_path / "gapsync.lock"
    r = cli("resolve", "-f", spec, "-o", lock, "--cache", tmp_path / "cache")
    assert r.code == 0, r.err
    ch = new_channel(tmp_path / "dmz", "prod")

    def create():
        return cli("bundle", "create", "-f", spec, "--lock", lock, "--state", ch.state, "--key", ch.keys[0],
                   "-o", tmp_path / "out", "--cache", tmp_path / "cache")
    return src, create


def test_path_model_is_bundled_without_a_cache_copy(tmp_path):
    src, create = _path_model(tmp_path)
    r = create()
    assert r.code == 0, r.err
    digest = hashlib.sha256((src / "weights.bin").read_bytes()).hexdigest()
    assert not (tmp_path / "cache" / "sha256" / digest[:2] / digest).exists()  # not copied into the cache
    bundle = next((tmp_path / "out").glob("*.gapsync"))
    with BundleReader(bundle) as rd:
        m = next(m for m in rd.iter_blobs() if m.digest == digest)
        assert b"".join(rd.chunks(m)) == (src / "weights.bin").read_bytes()


def _same_size_other_bytes(p: Path, keep_mtime: bool) -> None:
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("change", ["content-same-size-and-mtime", "touched", "grown"])
def test_path_file_changed_after_resolve_is_refused(tmp_path, change):
    src, create = _path_model(tmp_path)
    w = src / "weights.bin"
    if change == "touched":
        os.utime(w, ns=(w.stat().st_atime_ns, w.stat().st_mtime_ns + 1_000_000_000))
        # the lock pins size and sha256; a touch alone leaves the bytes right: carried
        r = create()
        assert r.code == 0, r.err
        return
    if change == "grown":
        w.write_bytes(w.read_bytes() + b"x")
    else:
        _same_size_other_bytes(w, keep_mtime=True)
    r = create()
    assert r.code == 3 and "weights.bin" in r.err and "changed since gapsync resolve" in r.err, r.err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.gapsync*"))


@pytest.mark.parametrize("keep_mtime", [True, False], ids=["mtime-kept", "mtime-changed"])
def test_path_file_changed_between_scan_and_write_is_refused(tmp_path, monkeypatch, keep_mtime):
    """Changed after this run looked at it (and scanned it), before the writer copies it: the
    modification time, or else the sha256 of the bytes written, refuses the bundle."""
    from gapsync.bundler.sources import model_local

    src, create = _path_model(tmp_path)
    real = model_local.use_path_files

    def then_change(model, cache):
        real(model, cache)
        _same_size_other_bytes(src / "weights.bin", keep_mtime)

    monkeypatch.setattr(model_local, "use_path_files", then_change)
    r = create()
    assert r.code == 3, r.err  # verification failed
    assert "weights.bin" in r.err and "changed since gapsync resolved it" in r.err, r.err
    assert not list((tmp_path / "out").glob("*.gapsync*"))


def test_abandon_stops_the_read_back_without_raising(tmp_path):
    """An interrupted write (Ctrl-C, a failing member) abandons the read-back: it stops at the
    next chunk, reports nothing of its own (the caller's error is the one to say)."""
    from gapsync.hashing import ReadBackHash

    p = tmp_path / "f"
    p.write_bytes(os.urandom(1 << 20) * 32)
    fd = os.open(p, os.O_RDONLY)
    try:
        h = ReadBackHash(fd)
        h.region(32 << 20, sha256="0" * 64, message="never said")
        h.abandon()
        assert not h._thread.is_alive()
    finally:
        os.close(fd)


def test_reader_asks_the_disk_ahead_of_its_reads(tmp_path, monkeypatch):
    """The importer's read of a blob (``BundleReader.chunks``) asks the kernel for each window
    before it reads it (``hashing.read_ahead``), so that an uncached bundle is read while the
    previous chunk is hashed and staged: the windows tile the member exactly, each is asked before
    any read in it, and the bytes are the member's, nothing past its end."""
    from gapsync.bundle import archive

    monkeypatch.setattr(BundleReader, "READ_AHEAD", 1 << 20)
    data = os.urandom(5 * (1 << 20) + 3)
    out = tmp_path / "b.gapsync"
    _write(out, [_blob(tmp_path, data)])
    events: list[tuple[str, int, int]] = []
    real_pread = os.pread
    with BundleReader(out) as r:
        m = next(r.iter_blobs())
        start = m._info.offset_data
        monkeypatch.setattr(archive, "read_ahead", lambda fd, off, n: events.append(("ahead", off, n)))
        monkeypatch.setattr(archive.os, "pread", lambda fd, n, off: (events.append(("read", off, n)), real_pread(fd, n, off))[1])
        assert b"".join(r.chunks(m)) == data
    windows = [(o, n) for e, o, n in events if e == "ahead"]
    assert windows[0][0] == start and sum(n for _, n in windows) == len(data)
    assert all(a + n == b for (a, n), (b, _) in zip(windows, windows[1:], strict=False))
    asked = 0
    for e, o, n in events:
        if e == "ahead":
            asked = o + n
        else:
            assert start <= o and o + n <= asked, "a read before its window was asked"
            assert o + n <= start + len(data)


def test_import_stages_each_blob_written_behind(tmp_path, monkeypatch):
    """The importer writes each staged blob to disk while it still reads the bundle
    (``hashing.WriteBehind``): the steps asked of the kernel are contiguous from the blob's first
    byte, and what is published is the bundle's blob, byte for byte."""
    from gapsync import hashing
    from tests.support.cli import cli

    src, create = _path_model(tmp_path)
    assert create().code == 0
    bundle = next((tmp_path / "out").glob("*.gapsync"))
    mirror = tmp_path / "mirror"
    assert cli("trust", "pin", tmp_path / "dmz" / "state" / "prod" / "1.root.json", "--mirror", mirror).code == 0
    monkeypatch.setattr(hashing.WriteBehind, "EVERY", 64 << 10)
    advised: dict[str, list[tuple[int, int]]] = {}
    real = hashing.write_back

    def record(fd, off, n):
        advised.setdefault(os.readlink(f"/proc/self/fd/{fd}"), []).append((off, n))
        real(fd, off, n)

    monkeypatch.setattr(hashing, "write_back", record)
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code == 0, r.err
    weights = (src / "weights.bin").read_bytes()
    digest = hashlib.sha256(weights).hexdigest()
    steps = next(v for k, v in advised.items() if Path(k.removesuffix(" (deleted)")).name == digest)
    assert steps[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(steps, steps[1:], strict=False))
    assert sum(n for _, n in steps) >= len(weights) - hashing.WriteBehind.EVERY
    published = [p for p in mirror.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size == len(weights)]
    assert published and all(p.read_bytes() == weights for p in published)


def test_the_bundle_hash_is_blake2b_512_with_or_without_libsodium(monkeypatch):
    """``hashing.blake2b_512``: libsodium's BLAKE2b (PyNaCl) where it imports, hashlib's where it
    does not; the same digest for every length, across block boundaries and in pieces."""
    import sys

    from gapsync import hashing

    fast = hashing.blake2b_512()
    assert type(fast).__module__.startswith("nacl")  # a dependency: the fast one is what runs here
    for n in (0, 1, 127, 128, 129, 1 << 20, (1 << 20) + 5):
        data = os.urandom(n)
        want = hashlib.blake2b(data).digest()
        h = hashing.blake2b_512()
        for i in range(0, n, 4099):
            h.update(data[i:i + 4099])
        assert h.digest() == want and len(want) == 64
    monkeypatch.setitem(sys.modules, "nacl.hashlib", None)  # the import fails
    slow = hashing.blake2b_512()
    assert not type(slow).__module__.startswith("nacl")
    slow.update(b"abc")
    assert slow.digest() == hashlib.blake2b(b"abc").digest()
