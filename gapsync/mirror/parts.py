"""Staging for blobs that span volumes (bundle format 2): parts wait here until the blob is whole.

Volumes come in any order, with repeats, one import each, so a part must outlive the import
that read it (an import's own scratch space is removed when it ends). Layout, under the
mirror's private ``.gapsync/parts/`` (never served, never on the removable medium)::

    parts/<blob sha256>/data        the blob being assembled: each part written at its offset
    parts/<blob sha256>/<n>.ok      part n is in ``data``, verified against its signed sha256
                                    (holds "<offset> <length> <sha256>": a later release that
                                    cuts the same blob otherwise does not reuse it)

A part is written into ``data`` while it is hashed and checked against the sha256 the signed
metadata gives for it, made durable (fsync), and only then marked ``<n>.ok`` (atomic rename). A
SIGKILL in the middle of a part leaves bytes in ``data`` without a marker: the re-run writes that
part again. When every part is marked, the whole file is hashed against the blob's signed
sha256 before it is handed to the import (a hard link into its scratch space): only a blob
checked whole is ever published. Every file is created and opened relative to a directory
opened once without following links (``fsutil.Dir``); a link or special file planted at any
name is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from gapsync import faults, fsutil
from gapsync.bundle.archive import SignedPart
from gapsync.errors import DigestMismatchError
from gapsync.hashing import CHUNK, ThreadedHash, WriteBehind, copy_verified, read_chunks

_HEX64 = re.compile(r"[0-9a-f]{64}")
DATA = "data"


class _Discard:
    def write(self, data: bytes) -> None:
        pass


class PartStore:
    def __init__(self, root: Path):
        self.root = root

    def _dir(self, digest: str, *, create: bool) -> fsutil.Dir | None:
        if not _HEX64.fullmatch(digest):
            raise ValueError(f"not a sha256: {digest!r}")
        if not create and not os.path.lexists(self.root / digest):
            return None
        if create:
            fsutil.make_dirs(self.root / digest)
        return fsutil.Dir(self.root / digest, create=False)  # O_NOFOLLOW: a planted link is refused

    def has(self, part: SignedPart) -> bool:
        d = self._dir(part.digest, create=False)
        if d is None:
            return False
        with d:
            st = d.lstat(f"{part.index}.ok")
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > 256:
                return False
            with d.open_regular(f"{part.index}.ok") as f:
                return f.read(257) == _marker(part)

    def put(self, part: SignedPart, chunks: Iterable[bytes], what: str) -> None:
        """Write the part at its offset in the blob's ``data`` file, checking its sha256 and
        length on the way; mark it done only once it is durable and verified."""
        d = self._dir(part.digest, create=True)
        assert d is not None
        with d:
            with d.open_rw(DATA) as f:
                f.seek(part.offset)  # written to disk while the volume is still read (hashing.WriteBehind)
                copy_verified(_killable(chunks), WriteBehind(f, part.offset), what=what, sha256=part.sha256,
                              size=part.length)
                f.flush()
                os.fsync(f.fileno())
            d.write_atomic(f"{part.index}.ok", _marker(part))
            d.fsync()
        faults.point("import.staged-part")

    def put_last(self, part: SignedPart, size: int, chunks: Iterable[bytes], what: str, dst: Path,
                 others: list[SignedPart]) -> None:
        """The part that makes the blob whole (every other part is staged): written at its
        offset while the WHOLE blob is hashed in the same pass (the staged bytes before it, the
        part as it streams, the staged bytes after it), so the blob is checked against its
        signed sha256 without reading the part a second time. A match proves this part's bytes
        too; a mismatch means this part is wrong (the staged ones were verified one by one): it
        is refused and left unmarked. Then the blob is hard-linked to ``dst``."""
        d = self._dir(part.digest, create=True)
        assert d is not None
        with d:
            with d.open_rw(DATA) as f:
                fd = f.fileno()
                h = ThreadedHash()
                _hash_range(fd, 0, part.offset, h, what)
                pos, end = part.offset, part.offset + part.length
                for chunk in _killable(chunks):
                    if pos + len(chunk) > end:
                        raise DigestMismatchError(f"{what}: more than its signed length {part.length}")
                    h.update(chunk)
                    _pwrite_all(fd, chunk, pos)
                    pos += len(chunk)
                if pos != end:
                    raise DigestMismatchError(f"{what}: {pos - part.offset} bytes, signed length {part.length}")
                _hash_range(fd, end, size, h, what)
                if os.fstat(fd).st_size != size or h.hexdigest() != part.digest:
                    rotted = _unmark_damaged(d, fd, others)
                    raise DigestMismatchError(
                        f"{what}: the blob it completes does not match its signed sha256; " + (
                            f"staged part(s) {', '.join(str(p.index) for p in rotted)} no longer match theirs (the "
                            "staging disk?) and were dropped: import their volumes again" if rotted else
                            "this part does not match its signed sha256") + "; nothing was published")
                os.fsync(fd)
            d.write_atomic(f"{part.index}.ok", _marker(part))
            d.fsync()
        faults.point("import.staged-part")
        fsutil.hard_link(self.root / part.digest / DATA, dst)

    def complete(self, parts: list[SignedPart]) -> bool:
        return all(self.has(p) for p in parts)

    def missing(self, parts: list[SignedPart]) -> list[SignedPart]:
        return [p for p in parts if not self.has(p)]

    def assemble(self, digest: str, size: int, dst: Path, what: str) -> None:
        """Hash the whole blob against its signed sha256 and length, then hard-link it to
        ``dst`` (the import's scratch). A mismatch (parts that verified one by one but do not
        make the blob: refused, and the staged parts are dropped so a re-run starts clean)."""
        d = self._dir(digest, create=False)
        assert d is not None
        with d:
            with d.open_regular(DATA) as f:
                if os.fstat(f.fileno()).st_size != size:
                    self.remove(digest)
                    raise DigestMismatchError(f"{what}: the assembled parts are {os.fstat(f.fileno()).st_size} bytes, "
                                              f"the signed length is {size}; the staged parts were dropped")
                try:
                    copy_verified(read_chunks(f), _Discard(), what=what, sha256=digest, size=size, overlap=False)
                except DigestMismatchError:
                    self.remove(digest)
                    raise
        fsutil.hard_link(self.root / digest / DATA, dst)

    def remove(self, digest: str) -> None:
        if _HEX64.fullmatch(digest):
            shutil.rmtree(self.root / digest, ignore_errors=True)

    def digests(self) -> Iterator[str]:
        if self.root.is_dir():
            for p in self.root.iterdir():
                if _HEX64.fullmatch(p.name):
                    yield p.name


def _hash_range(fd: int, start: int, end: int, h: ThreadedHash, what: str) -> None:
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(CHUNK, end - pos), pos)
        if not chunk:
            raise DigestMismatchError(f"{what}: the staged parts end at {pos}, expected {end}")
        h.update(chunk)
        pos += len(chunk)


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


def _unmark_damaged(d: fsutil.Dir, fd: int, parts: list[SignedPart]) -> list[SignedPart]:
    """The staged parts whose bytes no longer match their sha256: their markers are removed."""
    bad = []
    for p in parts:
        h = hashlib.sha256()
        pos, end = p.offset, p.offset + p.length
        while pos < end:
            chunk = os.pread(fd, min(CHUNK, end - pos), pos)
            if not chunk:
                break
            h.update(chunk)
            pos += len(chunk)
        if pos != end or h.hexdigest() != p.sha256:
            d.unlink(f"{p.index}.ok")
            bad.append(p)
    return bad


def _marker(part: SignedPart) -> bytes:
    return f"{part.offset} {part.length} {part.sha256}".encode()


def _killable(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A kill point between the chunks of a part (``GAPSYNC_KILL_AT=import.part-chunk:N``), so a
    test can SIGKILL an import in the middle of a part."""
    for chunk in chunks:
        yield chunk
        faults.point("import.part-chunk")
