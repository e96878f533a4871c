"""Streaming hash helpers: bytes are hashed while they move, never read twice, never held whole."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol

from gapsync.errors import DigestMismatchError

CHUNK = 1 << 20


class Hasher(Protocol):
    """What the helpers here need of a hashlib object (sha256, blake2b)."""

    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


class Sink(Protocol):
    """Where ``copy_verified`` writes: a binary file, or anything with ``write`` (a discarding
    sink when only the hash is wanted)."""

    def write(self, data: bytes, /) -> object: ...


def blake2b_512() -> Hasher:
    """A BLAKE2b-512 hasher for the minisign signature of a whole bundle (and its check):
    libsodium's (PyNaCl), which picks the AVX2 code where the CPU has it, else hashlib's. The
    same digest either way; the hash of a bundle's every byte is the end of a cold create, on
    one core, so its speed is the create's (docs/performance.md)."""
    try:
        from nacl.hashlib import blake2b
    except ImportError:  # a platform without a PyNaCl wheel
        return hashlib.blake2b()
    return blake2b(digest_size=64)


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
HAND_OFF_MIN = 64 << 10  # smaller updates run inline: a hand-off costs more than the hash


def _pool() -> ThreadPoolExecutor:
    """One worker per CPU (at least 2): parallel downloads each hand their hashing over, and
    must not queue behind fewer workers than there are cores."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="gapsync-hash")
        return _POOL


class ThreadedHash:
    """A hashlib object fed from a worker thread while the caller reads and writes the next chunk.

    Why: sha256 (SHA-NI, ~1.9 GB/s) and BLAKE2b (~1 GB/s) cost as much as the copy itself, and
    hashlib releases the GIL, so on two cores the hash of one chunk overlaps the I/O of the next.
    One update at most is in flight per object (ordering is kept, memory stays flat); the
    ``bytes`` chunks handed over are immutable, so the caller may go on at once.
    """

    def __init__(self, h: Hasher | None = None) -> None:
        self._h: Hasher = h if h is not None else hashlib.sha256()
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        self.wait()
        if len(data) < HAND_OFF_MIN:
            self._h.update(data)
        else:
            self._pending = _pool().submit(self._h.update, data)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def abandon(self) -> None:
        """Wait for the update in flight, ignoring its error: the caller is already failing and
        its own error is the one to report."""
        try:
            self.wait()
        except Exception:  # noqa: BLE001, S110 (see the docstring)
            pass

    def hexdigest(self) -> str:
        self.wait()
        return self._h.hexdigest()

    def digest(self) -> bytes:
        self.wait()
        return self._h.digest()


class _InlineHash(ThreadedHash):
    """The same interface, hashing on the caller's thread."""

    def update(self, data: bytes) -> None:
        self._h.update(data)


def copy_verified(
    chunks: Iterable[bytes], dst: Sink, *, what: str, sha256: str | None, size: int | None,
    hasher: Hasher | None = None, already: int = 0, overlap: bool = True,
) -> tuple[str, int]:
    """Copy chunks into ``dst``, hashing as they pass; refuse more than ``size`` bytes in all.

    To resume, pass ``hasher`` already fed with the ``already`` bytes that are on disk.
    ``overlap``: hash in a worker thread while ``dst`` is written (a win when there is a write to
    overlap; when ``dst`` discards, the hand-off between cores costs more than it saves).
    """
    h = ThreadedHash(hasher) if overlap else _InlineHash(hasher)
    total = already
    try:
        for chunk in chunks:
            total += len(chunk)
            if size is not None and total > size:
                raise DigestMismatchError(f"{what}: more than the announced {size} bytes")
            h.update(chunk)
            dst.write(chunk)
    except BaseException:
        h.abandon()  # the caller's hasher is never left being fed behind its back
        raise
    digest = h.hexdigest()
    if size is not None and total != size:
        raise DigestMismatchError(f"{what}: got {total} bytes, expected {size}")
    if sha256 is not None and digest != sha256:
        raise DigestMismatchError(f"{what}: sha256 {digest} does not match the expected {sha256}")
    return digest, total


def read_chunks(f: BinaryIO, limit: int | None = None, chunk_size: int = CHUNK) -> Iterable[bytes]:
    """Yield chunks from a file object, at most ``limit`` bytes in all."""
    left = limit
    while left is None or left > 0:
        chunk = f.read(chunk_size if left is None else min(chunk_size, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Refuse before writing a byte when the file system cannot hold ``needed`` bytes (plus 1%
    and 64 MiB for metadata), rather than fail half way through a 50 GB copy."""
    import shutil

    from gapsync.errors import FetchError

    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    margin = needed // 100 + (64 << 20)
    if free < needed + margin:
        raise FetchError(f"{directory}: {what} needs {needed / 1e9:.2f} GB and {free / 1e9:.2f} GB is free; "
                         "free space (or point it elsewhere) and run again")


# -- sealed cache entries -----------------------------------------------------------------------
# The cache (bundler/cache.py) stores a blob under its sha256 only after hashing it, then makes it
# read-only and sets its modification time to ``seal_mtime_ns(digest)``: a value only that digest
# has. Any later write through the file system (a hand edit, another process, ``cp`` over it)
# sets the time to now and so breaks the seal; ``is_sealed`` is what the bundle writer checks,
# from the descriptor it copies from, before it skips re-hashing the entry (docs/threat-model.md:
# bit rot that no write explains is left to the importer, which hashes every byte anyway).
_SEAL_EPOCH = 946_684_800  # 2000-01-01: far from any time a file is really written at


def seal_mtime_ns(digest: str) -> int:
    """The modification time (ns) of a sealed cache entry named ``digest`` (64 hex digits)."""
    return (_SEAL_EPOCH + int(digest[:6], 16)) * 1_000_000_000 + int(digest[6:14], 16) % 1_000_000_000


def is_sealed(st: os.stat_result, digest: str, size: int) -> bool:
    """Whether ``st`` (an ``fstat`` of the open entry) is the cache's sealed entry for ``digest``:
    a regular file, no write permission for anyone, ``size`` bytes, and the seal time."""
    import stat

    return (stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222 and st.st_size == size
            and st.st_mtime_ns == seal_mtime_ns(digest))


def write_back(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` to disk now
    (``POSIX_FADV_DONTNEED`` starts the writeback of dirty pages without waiting for it, and drops
    only pages that are clean already): a large file then goes to disk while it is still being
    written, instead of all of it in the final ``fsync`` (or ``sync``). Advice only: errors are
    ignored."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass


def read_ahead(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start reading ``length`` bytes at ``offset`` into the page cache now
    (``POSIX_FADV_WILLNEED``), without waiting: a reader that hashes and writes each chunk in
    turn then finds the next ones read while it worked, as ``cat`` or ``cp`` do with their
    larger reads. Advice only: errors are ignored."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
    except (OSError, AttributeError):
        pass


class WriteBehind:
    """A file being written (a download into the cache, a blob the importer stages), asking the
    kernel to write each ``EVERY`` bytes to disk as soon as they are written (``write_back``): the
    disk works while the bytes still arrive, instead of the whole blob waiting in dirty pages for
    the final ``fsync`` (or a ``sync``). ``tee``: a second place each chunk is written to (the
    bundle's body during a download, ``BundleBody``); the file's own pages are then dropped a step
    behind, the tee's copy being the one read next."""

    EVERY = 64 << 20

    def __init__(self, f: BinaryIO, at: int, tee: Sink | None = None) -> None:
        self._f = f
        self._advised = self._pos = at
        self._tee = tee
        self._dropped = at

    def write(self, data: bytes) -> int:
        n = self._f.write(data)
        if self._tee is not None:
            self._tee.write(data)
        self._pos += len(data)
        if self._pos - self._advised >= self.EVERY:
            self._f.flush()
            if self._tee is not None:
                # the bundle has its own copy of these bytes, hot for its signature: the cache
                # file's pages, asked out a step ago, are dropped now (clean ones only), so that
                # a model larger than half the memory does not push the bundle's pages out
                write_back(self._f.fileno(), self._dropped, self._advised - self._dropped)
                self._dropped = self._advised
            write_back(self._f.fileno(), self._advised, self._pos - self._advised)
            self._advised = self._pos
        return n


class ReadBackHash:
    """The BLAKE2b-512 of a file being written (for its minisign signature), computed by reading
    back what was written, from the page cache, in a thread of its own; and on the way the sha256
    of chosen regions (each blob member), checked against what they must be.

    Why read back: the writer copies blob bytes in the kernel (``fsutil.copy_range``), so they
    never pass through Python to be hashed on the way. Reading them back costs a memory copy from
    the page cache (several GB/s), and both hashes then cover exactly the bytes of the bundle
    file, not the source they were copied from. The BLAKE2b runs on this thread, the sha256 of
    the same chunk on a pool worker (``ThreadedHash``): each hash once per byte, in parallel with
    each other and with the copy. The reader stays at most ``max_lag`` bytes behind the writer
    (``wait_lag``), so what it reads is still in the page cache and memory stays flat.

    A region whose sha256 does not match is recorded; ``check()`` (called by the writer before
    each member and at the end) raises it as ``DigestMismatchError`` with the region's message.
    """

    READ = 4 << 20
    WRITEBACK = 64 << 20  # hashed bytes between two writeback requests (``_write_back``)

    def __init__(self, fd: int, h: Hasher | None = None, max_lag: int = 1 << 30) -> None:
        import queue

        from gapsync import fsutil

        self._fd = fsutil.reopen_readonly(fd)  # the writer's descriptor is write-only
        self._h: Hasher = h if h is not None else hashlib.blake2b()
        self._queue: queue.SimpleQueue[tuple[int, int, str | None, str] | None] = queue.SimpleQueue()
        self._done = 0  # bytes hashed so far (a prefix of the file)
        self._queued = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._max_lag = max_lag
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="gapsync-readback", daemon=True)
        self._thread.start()

    def region(self, end: int, *, sha256: str | None = None, message: str = "") -> None:
        """Hash the file up to ``end`` (the bytes from the last region's end), which the caller
        has written and flushed; with ``sha256``, that region must have this digest."""
        if end < self._queued:
            raise ValueError("regions are hashed in order")
        self._queue.put((self._queued, end, sha256, message))
        self._queued = end

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                os.close(self._fd)
                return
            start, end, sha256, message = item
            try:
                if self._error is None:
                    self._hash(start, end, sha256, message)
            except BaseException as e:  # noqa: BLE001 - handed to the writer's thread by check()
                self._error = e
            with self._cond:
                self._done = end
                self._cond.notify_all()

    def _hash(self, start: int, end: int, sha256: str | None, message: str) -> None:
        check = ThreadedHash() if sha256 else None
        pos = advised = start
        # no read_ahead here, unlike the import's reader: with these 4 MiB reads the kernel's own
        # read-ahead keeps up, and asking for more made an uncached 8 GB read-back slower
        # (14-15 s against 9.4 s; docs/performance.md)
        while pos < end and not self._stopped:
            chunk = os.pread(self._fd, min(self.READ, end - pos), pos)
            if not chunk:
                raise DigestMismatchError(f"{message}: the bundle file ends at {pos}, {end} expected")
            if check is not None:
                check.update(chunk)
            self._h.update(chunk)
            pos += len(chunk)
            if pos - advised >= self.WRITEBACK or pos == end:
                self._write_back(advised, pos - advised)
                advised = pos
        if check is not None and not self._stopped and check.hexdigest() != sha256:
            raise DigestMismatchError(message)

    def _write_back(self, offset: int, length: int) -> None:
        """Start writing the hashed range to disk now (``POSIX_FADV_DONTNEED`` starts the
        writeback of dirty pages and drops the clean ones): the disk works while the copy and the
        hash go on, instead of all of it in the final ``fsync``, and the page cache does not fill
        with a bundle nobody reads again here."""
        try:
            os.posix_fadvise(self._fd, offset, length, os.POSIX_FADV_DONTNEED)
        except (OSError, AttributeError):
            pass  # advice only

    def wait_lag(self) -> None:
        """Block until the reader is at most ``max_lag`` bytes behind the regions given."""
        with self._cond:
            while self._queued - self._done > self._max_lag and self._thread.is_alive():
                self._cond.wait(1.0)
        self.check()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def digest(self) -> bytes:
        """Wait for every region, raise a mismatch if one was found, return the file's digest."""
        self._queue.put(None)
        self._thread.join()
        self.check()
        return self._h.digest()

    def abandon(self) -> None:
        """Stop at the next chunk (an interrupted or failing write: nothing more to hash)."""
        self._stopped = True
        self._queue.put(None)
        self._thread.join()
