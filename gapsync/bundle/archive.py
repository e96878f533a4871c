"""THE bundle format (v1; v2 for volumes with parts; v3 with the metadata last): the contract
between two gapsync versions that may be years apart.

One POSIX tar (pax), not compressed as a whole. Members, in this order:

    metadata/1.root.json ... metadata/N.root.json   the whole root chain
    metadata/timestamp.json, metadata/snapshot.json, metadata/targets.json
    blobs/sha256/<64 lowercase hex>                  one per distinct blob carried
    blobs/sha256/<64 lowercase hex>.part/<n>        format 2 and later: part n (1-based) of a
                                                    blob that spans volumes (never beside the whole)

Format 3 has the same members with the blobs first and the metadata after them: the bundle a
cold ``bundle create`` writes while its blobs download (``BundleBody``), so that the BLAKE2b of
the file (its minisign signature) runs along the download instead of after it. Its targets.json
says format 3; a bundle whose member order does not match its format is refused.

Anything else is a reason to refuse the whole bundle: a member header that is not byte for byte
what ``member_header`` writes (format, mode, owner, mtime, pax records: one canonical form), a
GNU header, another member name (matched whole: ``fullmatch``), a link, a device, a sparse file,
a duplicate, metadata after a blob (or, in format 3, a blob after the metadata), a metadata member over its cap (from its header, before it
is read), a header that hides bytes after a NUL (in a name
or in the checksum field), non-zero bytes in the padding after a member's data, a pax header
larger than a few KiB, more blob members than targets.json lists targets (or more root versions
than a chain can have), missing end-of-archive blocks, or anything but the two zero blocks and the
record padding after them. A bundle therefore has exactly one byte-for-byte form for its
content: no byte the reader skips can carry anything. The reader never extracts: it hands out
each member as a stream bounded by the member's size (which the caller compares with the signed
length before reading a byte). See docs/bundle-format.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self

from gapsync import faults, fsutil
from gapsync.errors import BundleFormatError, DigestMismatchError
from gapsync.hashing import CHUNK, ReadBackHash, blake2b_512, is_sealed, read_ahead, write_back
from gapsync.model import BlobRef

FORMAT_VERSION = 3  # the newest format this gapsync writes and reads
# 1: every blob whole in one member. 2: a blob may span volumes in parts (``PART_RE``), listed
# in the signed targets metadata. 3: as 2, with the blob members first and the metadata members
# after them (written while the blobs download: ``BundleBody``). The format a bundle uses is ``x-gapsync.format`` in its
# targets.json; the reader refuses a newer one, naming it, before it looks at any blob member.
READ_FORMATS = (1, 2, 3)
SUFFIX = ".gapsync"
# Member names, matched with ``fullmatch`` only (``re.match`` with ``$`` accepts a trailing newline).
METADATA_RE = re.compile(r"metadata/((?:[1-9][0-9]{0,8})\.root|timestamp|snapshot|targets)\.json")
BLOB_RE = re.compile(r"blobs/sha256/([0-9a-f]{64})")
# Format 2: part <index> (1-based, no leading zero) of a blob that spans volumes.
PART_RE = re.compile(r"blobs/sha256/([0-9a-f]{64})\.part/([1-9][0-9]{0,5})")
MAX_PARTS = 999_999
# The most bytes of each metadata role the reader accepts, checked from the tar header before a
# byte is read: the metadata is parsed (json) before its signatures can be checked, and parsing
# costs up to ~25x its size in memory. 16 MiB of targets is ~40,000 targets; timestamp and root
# are python-tuf's own defaults. See docs/bundle-format.md.
METADATA_LIMITS = {"root": 512_000, "timestamp": 16_384, "snapshot": 1 << 20, "targets": 16 << 20}
MAX_EXTENDED_HEADER = 512  # the writer's only pax record is "size" (a blob of 8 GiB or more)
MAX_TRAILER = 1 << 20
MAX_MEMBERS = 500_000
MAX_ROOTS = 1024  # root versions a bundle may carry (a key rotation a month for 85 years)
MAX_ROOT_CHAIN = 16 << 20  # and their total size: read_metadata holds them all in memory
BLOB_MARGIN = 16  # blob members allowed beyond the number of targets before the reader refuses
WRITE_CHUNK = 4 << 20
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


def bundle_file_name(name: str, channel: str, version: int) -> str:
    return f"{name}-{channel}-{version}{SUFFIX}"


def member_header(name: str, size: int, mtime: int) -> bytes:
    """The tar header bytes of one member, exactly as the writer writes them and as the reader
    requires them: POSIX ustar (pax format), a regular file, mode 0644, uid/gid 0, empty
    uname/gname, the bundle's one mtime, no link name, no device numbers; a pax extended header
    only when the size does not fit ustar's 11 octal digits (a blob of 8 GiB or more), holding
    the one record ``size``. The reader rebuilds these bytes for every member and compares."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.type = size, mtime, 0o644, tarfile.REGTYPE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _metadata_role(member_name: str) -> str:
    role = METADATA_RE.fullmatch(member_name).group(1)  # type: ignore[union-attr]
    return "root" if role.endswith(".root") else role


@dataclass(frozen=True)
class SignedPart:
    """One part of a blob that spans volumes, as the signed metadata lists it."""

    digest: str
    index: int  # 1-based, as in the member name
    volume: int  # 1-based volume that carries it
    offset: int
    length: int
    sha256: str


_HEX64 = re.compile(r"[0-9a-f]{64}")


def parse_parts(table: object, sizes: dict[str, int], volumes: object, where: str) -> dict[str, list[SignedPart]]:
    """Validate the signed parts table (``custom.parts`` of the bundle.json target, format 2):
    ``{blob sha256: [[volume, offset, length, part sha256], ...]}`` in part order. Every blob
    is a target of the release (``sizes``: digest -> signed length); its parts, at least two, in
    strictly increasing volumes within ``1..volumes``, tile the blob exactly: the first at offset
    0, each starting where the one before ends, each at least one byte, the last ending at the
    signed length. A gap, an overlap, a part past the end, a bad field: BundleFormatError, the
    whole bundle refused (signed, but not something gapsync writes)."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise BundleFormatError(f"{where}: the signed parts table is not a mapping")
    if type(volumes) is not int or not 1 <= volumes <= MAX_PARTS:
        raise BundleFormatError(f"{where}: the signed parts table needs a volume count, got {volumes!r}")
    out: dict[str, list[SignedPart]] = {}
    for digest, rows in table.items():
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise BundleFormatError(f"{where}: parts of {str(digest)[:80]!r}, which is not a sha256")
        size = sizes.get(digest)
        if size is None:
            raise BundleFormatError(f"{where}: parts of blob {digest}, which is not a target of this release")
        if not isinstance(rows, list) or not 2 <= len(rows) <= min(volumes, MAX_PARTS):
            raise BundleFormatError(f"{where}: blob {digest}: expected 2 to {volumes} parts, got "
                                    f"{len(rows) if isinstance(rows, list) else type(rows).__name__}")
        parts: list[SignedPart] = []
        offset = last_volume = 0
        for i, row in enumerate(rows, 1):
            ok = (isinstance(row, list) and len(row) == 4 and all(type(v) is int for v in row[:3])
                  and isinstance(row[3], str) and _HEX64.fullmatch(row[3]) is not None)
            if not ok:
                raise BundleFormatError(f"{where}: blob {digest} part {i}: not [volume, offset, length, sha256]")
            vol, off, length, sha = row
            if not last_volume < vol <= volumes:
                raise BundleFormatError(f"{where}: blob {digest} part {i}: volume {vol} (parts are in increasing "
                                        f"volumes of 1..{volumes})")
            if off != offset:
                raise BundleFormatError(f"{where}: blob {digest} part {i}: offset {off}, expected {offset} "
                                        f"({'overlaps' if off < offset else 'leaves a gap after'} the part before)")
            if length < 1 or off + length > size:
                raise BundleFormatError(f"{where}: blob {digest} part {i}: {length} bytes at {off} "
                                        f"{'runs past the end of' if length > 0 else 'is empty, in'} a blob of {size} bytes")
            parts.append(SignedPart(digest, i, vol, off, length, sha))
            offset, last_volume = off + length, vol
        if offset != size:
            raise BundleFormatError(f"{where}: blob {digest}: its parts end at {offset}, the blob is {size} bytes "
                                    "(a part is missing)")
        out[digest] = parts
    return out


# -- writer ---------------------------------------------------------------------------------

class BundleWriter:
    """Writes a bundle to ``<path>.partial`` and renames it only when complete, so an
    interrupted run never leaves a file that looks like a bundle.

    Blob bytes are copied in the kernel (``fsutil.copy_range``: ``copy_file_range``, a reflink
    where the file system shares extents, else ``sendfile``, else ``pread``/``pwrite``), never
    through Python. The hashes are computed over the written file instead, read back from the
    page cache by a thread of their own (``ReadBackHash``): the BLAKE2b-512 of the whole file
    (for the minisign signature) and the sha256 of each blob member, checked against the digest
    it is named by (a damaged cache entry must not produce a bundle that the other side would
    refuse after the trip). Each hash once per byte, each on its own core, overlapping the copy:
    see docs/performance.md ("Create at the disk's pace")."""

    def __init__(self, path: Path, mtime: int, *, body: BundleBody | None = None):
        """``body``: the blob members already written while they downloaded (``BundleBody``, for
        this ``path`` and ``mtime``; format 3): what is added here follows them, the blobs not
        in the body first, then every metadata member, and the BLAKE2b goes on from where the
        body's left off."""
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.mtime = mtime
        self.size = 0
        self._last = body is not None  # format 3: the metadata after the blobs
        self._in_blobs = self._in_metadata = False
        if body is None:
            # created O_EXCL|O_NOFOLLOW in the output directory opened once; a planted link at the
            # .partial or the bundle name is refused, never written through (fsutil)
            self._out = fsutil.atomic_file(path, 0o644, temp=self.partial.name)
            self._hash = ReadBackHash(self._out.fileno(), blake2b_512())
        else:
            if (body.path, body.mtime) != (path, mtime):
                raise ValueError(f"the body of {body.path} is not the body of {path}")
            self._out, self._hash, self.size = body.take()
        self._f = self._out.file
        self._f.seek(self.size)
        self._names: set[str] = set(body.names() if body is not None else ())

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self.size += len(data)

    def _header(self, name: str, size: int) -> None:
        if name in self._names:
            raise ValueError(f"duplicate member {name}")
        self._names.add(name)
        self._write(member_header(name, size, self.mtime))

    def _pad(self, size: int) -> None:
        rem = size % BLOCK
        if rem:
            self._write(b"\0" * (BLOCK - rem))

    def add_metadata(self, name: str, data: bytes) -> None:
        member = f"metadata/{name}"
        if (self._in_blobs and not self._last) or not METADATA_RE.fullmatch(member):
            raise ValueError(f"bad metadata member {member}")
        self._in_metadata = True
        self._header(member, len(data))
        self._write(data)
        self._pad(len(data))

    def _copy_member(self, name: str, src: Path, offset: int, length: int, sha256: str, whole: int | None,
                     message: str) -> None:
        """Header, then ``length`` bytes of ``src`` from ``offset`` copied in the kernel, their
        sha256 checked on the read-back, then the padding. ``whole``: the size the source file
        must have (a blob), checked before a byte is copied.

        A whole blob whose source is a cache entry sealed by the cache (``hashing.is_sealed``,
        checked on the descriptor copied from, before and after the copy) is not hashed again
        with sha256: the cache hashed it when it stored it, and a write since would have broken
        the seal (docs/threat-model.md). The BLAKE2b of the file covers its bytes all the same."""
        self._hash.check()  # a mismatch found in an earlier member stops the bundle here
        if self._last and self._in_metadata:
            raise ValueError(f"blob member {name} after the metadata (format 3)")
        self._in_blobs = True
        # an operator's file standing for the blob (a path model, cache.ExternalPath): its size
        # and modification time must be those the run saw, before and after the copy, and the
        # bytes written must have the sha256 (checked on the read-back)
        expect = getattr(src, "expect", None)
        if expect is not None:
            message = (f"{src}: changed since gapsync resolved it (size, modification time or content no longer "
                       f"match {sha256}); run gapsync resolve again")
        self._header(name, length)
        with fsutil.open_regular(src) as f:
            st = os.fstat(f.fileno())
            have = st.st_size
            if (whole is not None and have != whole) or have < offset + length or (
                    expect is not None and (st.st_size, st.st_mtime_ns) != expect):
                raise DigestMismatchError(f"{message} (the file has {have} bytes)")
            sealed = expect is None and whole is not None and is_sealed(st, sha256, whole)
            self._f.flush()
            self._hash.region(self.size)  # the headers and padding written so far
            n = self._copy(f.fileno(), offset, length)
            st = os.fstat(f.fileno())
            if expect is not None and (st.st_size, st.st_mtime_ns) != expect:
                raise DigestMismatchError(f"{message} (modified while it was copied)")
            if sealed and not is_sealed(st, sha256, length):
                sealed = False  # written to while it was copied: the read-back checks the bytes
        self.size += n
        self._f.seek(self.size)  # the kernel wrote at explicit offsets: the buffered file follows
        if n != length:
            raise DigestMismatchError(f"{message} ({n} bytes)")
        if sealed:
            self._hash.region(self.size)
        else:
            self._hash.region(self.size, sha256=sha256, message=message)
        self._pad(length)
        self._hash.wait_lag()
        faults.point("create.wrote-blob")

    def _copy(self, src_fd: int, offset: int, length: int) -> int:
        """Copy in the kernel in steps of ``ReadBackHash.WRITEBACK`` bytes, asking the kernel
        after each to start writing that step to disk (``hashing.write_back``): the disk works
        from the first step on, not only once the read-back hash has passed (or in the final
        fsync). The pages stay in the page cache (they are dirty when advised) for the read-back."""
        out = self._f.fileno()
        done = 0
        while done < length:
            step = min(ReadBackHash.WRITEBACK, length - done)
            n = fsutil.copy_range(src_fd, offset + done, out, self.size + done, step)
            write_back(out, self.size + done, n)
            done += n
            if n < step:
                break
        return done

    def add_blob(self, blob: BlobRef, src: Path) -> None:
        """Copy a cached blob in; its sha256 is checked on the read-back (see the class)."""
        self._copy_member(f"blobs/sha256/{blob.digest}", src, 0, blob.size, blob.digest, blob.size,
                          f"cached blob {src}: does not match {blob.digest} ({blob.size} bytes); "
                          "remove it from the cache and run again")

    def add_part(self, digest: str, index: int, src: Path, offset: int, length: int, sha256: str) -> None:
        """Format 2: bytes ``offset .. offset+length`` of the cached blob ``digest`` as member
        ``blobs/sha256/<digest>.part/<index>``, checked against the part's (signed) sha256 on
        the read-back, as ``add_blob`` checks a whole blob."""
        name = f"blobs/sha256/{digest}.part/{index}"
        if not PART_RE.fullmatch(name):
            raise ValueError(f"bad part member {name}")
        self._copy_member(name, src, offset, length, sha256, None,
                          f"cached blob {src}: part {index} ({length} bytes at {offset}) does not match "
                          f"{sha256}; remove it from the cache and run again")

    def close(self) -> bytes:
        """Finish the archive, make it durable, rename it into place; returns the BLAKE2b-512."""
        self._write(b"\0" * (2 * BLOCK))
        rem = self.size % RECORD
        if rem:
            self._write(b"\0" * (RECORD - rem))
        self._f.flush()
        self._hash.region(self.size)
        try:
            digest = self._hash.digest()  # raises a blob's mismatch: the caller aborts
        except BaseException:
            self.abort()
            raise
        self._out.commit()  # flush, fsync, rename over the bundle name relative to the directory
        return digest

    def abort(self) -> None:
        self._hash.abandon()
        self._out.abort()


class BundleBody:
    """The blob members of a bundle, written while their blobs download (issue 21: a cold
    ``bundle create`` should take little more than the download): the first part of a format 3
    bundle, whose metadata comes after its blobs.

    Each download reserves its member at the end of the body (``slot``: the header written at
    once, then the data and the zero padding) and writes its bytes there as they arrive, next
    to the cache file (or, with ``--no-cache``, only there), while they are in the page cache.
    The BLAKE2b-512 of the file (its minisign signature) follows the writes: whenever the
    members from the start of the file are written further, the bytes up to there are read back
    and hashed (``ReadBackHash``, on its own thread), so by the time the last download ends,
    little is left to hash. When the scan and the policy are done, ``BundleWriter(...,
    body=...)`` takes the file over (``take``) and appends the blobs that did not download in
    this run (cached, derived, bundle.json), then the metadata and the end of the archive,
    the hash going on from where the body's left off.

    A slot whose download did not finish or whose write failed, or a blob the bundle then does
    not carry (blocked by the policy), makes the body unusable (``usable``): the caller aborts
    it and writes the bundle the usual way (metadata first), from the cache. The file is the
    bundle's ``.partial``, created like ``BundleWriter``'s (``O_EXCL|O_NOFOLLOW``), removed by
    ``abort``. The downloads write each member's bytes once, in order, never again at an
    offset already written (``BodySlot.write``), so what the hash read back is what stays."""

    HASH_STEP = 8 << 20  # written bytes between two regions handed to the hash

    def __init__(self, path: Path, mtime: int):
        self.path, self.mtime = path, mtime
        self.partial = path.with_name(path.name + ".partial")
        self._out: fsutil.AtomicFile | None = fsutil.atomic_file(path, 0o644, temp=self.partial.name)
        self._fd = self._out.fileno()
        # guards the state below; a write holds it only to enter and to leave (``_busy``), so the
        # downloads write side by side, and closing waits for the writes under way to end
        self._lock = threading.Condition()
        self._busy = 0
        self._slots: dict[str, BodySlot] = {}
        self._order: list[BodySlot] = []
        self.size = 0
        self.broken: str | None = None  # why the body cannot be used (a write failed)
        self._rfd: int | None = None  # read-only, for held blobs (``pread``)
        try:
            self._hash: ReadBackHash | None = ReadBackHash(self._fd, blake2b_512())
        except BaseException:
            self._out.abort()
            raise
        self._extent = 0  # how far the file has been written (what is beyond reads short)
        self._ready = 0  # the body is final up to here: the hash may read it
        self._next = 0  # the first slot in ``_order`` not wholly final
        self._hashed = 0  # handed to the hash up to here

    def slot(self, digest: str, size: int) -> BodySlot | None:
        """Reserve the member of blob ``digest`` (``size`` bytes) at the end of the body; None
        when the body is broken or closed, or the blob already has a member."""
        name = f"blobs/sha256/{digest}"
        if not BLOB_RE.fullmatch(name):
            raise ValueError(f"bad blob member {name}")
        header = member_header(name, size, self.mtime)
        with self._lock:
            if self._out is None or self.broken or digest in self._slots:
                return None
            start = self.size
            slot = BodySlot(self, digest, size, start + len(header))
            self._slots[digest] = slot
            self._order.append(slot)
            self.size = start + len(header) + size + (-size % BLOCK)
        if not self._write(header, start):
            return None
        slot.header_written = True
        self._advance()
        return slot

    def _advance(self, force: bool = False) -> None:
        """Hand the hash what is final from the start of the file on: every member whose header
        and data are written, and the data written so far of the first one that is not, never
        past the file's end (the last member's padding comes with ``take``). In steps of
        ``HASH_STEP``, or whatever there is with ``force``."""
        with self._lock:
            if self._hash is None or self.broken:
                return
            while self._next < len(self._order):
                s = self._order[self._next]
                if not s.header_written:
                    break
                if s.written < s.size:
                    self._ready = max(self._ready, s.offset + s.written)
                    break
                self._ready = s.offset + s.size + (-s.size % BLOCK)
                self._next += 1
            end = min(self._ready, self._extent)
            if end > self._hashed and (force or end - self._hashed >= self.HASH_STEP):
                self._hash.region(end)
                self._hashed = end

    def _enter(self) -> bool:
        """Whether a write or an advice on the descriptor may go ahead (counted in ``_busy``): never
        after ``abort`` or ``take``, which wait for those under way (the descriptor number may be
        reused once the file is closed)."""
        with self._lock:
            if self._out is None or self.broken:
                return False
            self._busy += 1
            return True

    def _leave(self, extent: int = 0) -> None:
        with self._lock:
            self._busy -= 1
            self._extent = max(self._extent, extent)
            if not self._busy:
                self._lock.notify_all()

    def _write(self, data: bytes, offset: int) -> bool:
        if not self._enter():
            return False
        extent = 0
        try:
            fsutil.pwrite_all(self._fd, data, offset)
            extent = offset + len(data)
        except OSError as e:
            with self._lock:
                self.broken = f"cannot write the bundle beside the download ({e.strerror or e})"
            return False
        finally:
            self._leave(extent)
        return True

    def _write_back(self, offset: int, length: int) -> None:
        if self._enter():
            try:
                write_back(self._fd, offset, length)
            finally:
                self._leave()

    def _close(self) -> fsutil.AtomicFile | None:
        """Take the file away from the writers, once the writes under way have ended."""
        with self._lock:
            out, self._out = self._out, None
            while self._busy:
                self._lock.wait()
            self._close_reader()
        return out

    def pread(self, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` of the body: how a held blob (``BodySlot.held_path``)
        is read back by the scanners. Refused once the body is closed (its descriptor number may
        belong to another file by then)."""
        with self._lock:
            if self._out is None:
                raise BundleFormatError(f"{self.partial}: the bundle body is closed; its blobs can no longer be read")
            if self._rfd is None:  # the body is open write-only
                self._rfd = fsutil.reopen_readonly(self._fd)
            return os.pread(self._rfd, n, offset)

    def _close_reader(self) -> None:
        if self._rfd is not None:
            os.close(self._rfd)
            self._rfd = None

    def names(self) -> list[str]:
        return [f"blobs/sha256/{d}" for d in self._slots]

    def digests(self) -> dict[str, int]:
        """The blobs in the body, with their sizes, in the body's order."""
        return {d: s.size for d, s in self._slots.items()}

    def usable(self, carried: dict[str, int]) -> str | None:
        """None when every member is complete and is a blob the bundle carries, with the size
        it carries it with (``carried``: digest -> size); else why not."""
        if self._out is None:
            return "closed"
        if self.broken:
            return self.broken
        if not self._slots:
            return "nothing was downloaded"
        for d, s in self._slots.items():
            if not s.complete:
                return f"blob {d} did not finish downloading"
            if carried.get(d) != s.size:
                return f"blob {d} is not carried (blocked, or the other side has it)"
        return None

    def take(self) -> tuple[fsutil.AtomicFile, ReadBackHash, int]:
        """End the body (its last padding) and hand the file over to the writer that appends
        the rest: the file, the hash (every byte of the body handed to it) and the body's size."""
        self._advance(force=True)
        out = self._close()
        h, self._hash = self._hash, None
        if out is None or h is None:
            if h is not None:
                h.abandon()
            raise ValueError(f"{self.path}: the bundle body is closed")
        try:
            os.ftruncate(self._fd, self.size)
            h.region(self.size)
        except BaseException:
            h.abandon()
            out.abort()
            raise
        return out, h, self.size

    def abort(self) -> None:
        """Remove the body (the ``.partial``); no-op once handed to a writer or aborted."""
        out = self._close()
        with self._lock:
            h, self._hash = self._hash, None
        if h is not None:
            h.abandon()
        if out is not None:
            out.abort()


class BodySlot:
    """One member of a ``BundleBody``: where a download writes the blob's bytes, in order, as
    they arrive (``write``), and says when they were all verified (``finish``)."""

    def __init__(self, body: BundleBody, digest: str, size: int, offset: int):
        self.body, self.digest, self.size, self.offset = body, digest, size, offset
        self.written = self._advised = 0
        self.complete = self._failed = False
        self.header_written = False  # its tar header is in the file (``BundleBody._advance``)
        # the only copy (``bundle create --no-cache``): the download writes here and nowhere
        # else, and a failed write fails it (``fetch.fetch_one``)
        self.held = False

    def held_path(self) -> fsutil.HeldPath:
        """Where the scanners read this blob's verified bytes (``fsutil.open_blob``), once complete."""
        if not self.complete:
            raise ValueError(f"blob {self.digest} is not complete in the bundle body")
        return fsutil.held_path(f"{self.body.partial.name}#blobs/sha256/{self.digest}", self.body.pread, self.offset,
                                self.size)

    def write(self, data: bytes) -> int:
        """Write the next bytes; a failure marks the body unusable, never the download."""
        if self._failed or self.written + len(data) > self.size:
            self._failed = True
            return len(data)
        if not self.body._write(data, self.offset + self.written):
            self._failed = True
            return len(data)
        self.written += len(data)
        if self.written - self._advised >= ReadBackHash.WRITEBACK:
            self.body._write_back(self.offset + self._advised, self.written - self._advised)
            self._advised = self.written
        self.body._advance()
        return len(data)

    def finish(self) -> None:
        """Every byte was written and the download verified them against the blob's sha256."""
        self.complete = not self._failed and self.written == self.size


# -- reader ---------------------------------------------------------------------------------

CHKSUM_RE = re.compile(rb"[0-7]{6}\0 ")


def _check_raw_header(buf: bytes | bytearray) -> None:
    """Refuse ustar fields that hide bytes after their NUL terminator (name, linkname, prefix):
    tarfile would silently cut ``blobs/sha256/<hex>\\0../../x`` down to the valid part. The
    checksum field: see ``_StrictTarInfo.frombuf``."""
    for start, length, field in ((0, 100, "name"), (157, 100, "linkname"), (345, 155, "prefix")):
        raw = buf[start:start + length]
        nul = raw.find(b"\0")
        if nul != -1 and raw[nul:].strip(b"\0"):
            raise BundleFormatError(f"tar header {field} field has bytes after a NUL: {raw[:nul][:40]!r}")


class _StrictTarInfo(tarfile.TarInfo):
    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        header = len(buf) == BLOCK and buf.count(b"\0") != BLOCK
        if header:
            _check_raw_header(buf)
        ti = super().frombuf(buf, encoding, errors)
        # The checksum field is the one header field the checksum does not cover, and tarfile
        # reads it loosely (leading spaces for zeros, anything after the NUL): it must be six
        # octal digits, a NUL and a space, as tarfile, GNU tar and libarchive all write it, so
        # that no header byte can change without the bundle being refused.
        if header and not CHKSUM_RE.fullmatch(buf[148:156]):
            raise BundleFormatError(f"tar header checksum field is not in the canonical form: {buf[148:156]!r}")
        return ti

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # refused before tarfile reads their data: the writer writes none of these, and at most
        # one block of pax records (see member_header)
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.GNUTYPE_SPARSE):
            raise BundleFormatError(f"GNU tar header (type {self.type!r}) is not allowed in a bundle")
        if self.type == tarfile.XGLTYPE:
            raise BundleFormatError("tar global extended header is not allowed in a bundle")
        if self.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE) and self.size > MAX_EXTENDED_HEADER:
            raise BundleFormatError(f"tar extended header of {self.size} bytes (limit {MAX_EXTENDED_HEADER})")
        return super()._proc_member(tarfile_)  # type: ignore[misc, no-any-return]  # tarfile's private hook


@dataclass(frozen=True)
class BlobMember:
    """A blob member: the whole blob ``digest``, or (format 2) its part number ``part`` (1-based;
    0 means the whole blob), whose offset, length and sha256 the signed metadata gives."""

    digest: str
    size: int
    _info: tarfile.TarInfo
    part: int = 0

    @property
    def name(self) -> str:
        return f"blobs/sha256/{self.digest}" + (f".part/{self.part}" if self.part else "")


def bundle_format(targets_signed: object, where: str) -> int:
    """The format a bundle says it uses (``x-gapsync.format`` of its targets metadata; 1 when
    absent, as the first bundles wrote it), refused unless this gapsync reads it: a newer format
    is named, so the operator knows which gapsync to bring."""
    info = targets_signed.get("x-gapsync") if isinstance(targets_signed, dict) else None
    fmt = info.get("format", 1) if isinstance(info, dict) else 1
    if type(fmt) is not int or fmt < 1:
        raise BundleFormatError(f"{where}: metadata/targets.json has an invalid bundle format {fmt!r}")
    if fmt not in READ_FORMATS:
        raise BundleFormatError(f"{where}: bundle format {fmt}: this gapsync reads formats "
                                f"{', '.join(map(str, READ_FORMATS))} only; it needs a gapsync that reads format {fmt} "
                                "(upgrade gapsync on this side)")
    return fmt


class BundleReader:
    """Reads a bundle in two cheap steps: a header pass that checks every member's name, type,
    order and size and the end of the archive (before any TUF or hashing work, so a damaged
    50 GB bundle is refused in seconds), then ``read_metadata()`` and ``iter_blobs()``."""

    def __init__(self, path: Path, max_members: int = MAX_MEMBERS, *, fileobj: BinaryIO | None = None):
        """``fileobj``: the bundle already open (from ``fsutil.open_regular``; the reader closes
        it), ``path`` then only names it in messages."""
        self.path = path
        try:
            # a symlink, FIFO or device is refused at once (fsutil.UnsafeFileError), never opened
            # in a way that could block or read through a link planted on the medium
            self._f: BinaryIO = fileobj if fileobj is not None else fsutil.open_regular(path)
        except OSError as e:
            raise BundleFormatError(f"{path}: cannot open ({e.strerror})") from e
        self.file_size = os.fstat(self._f.fileno()).st_size
        try:
            if self.file_size % BLOCK:
                raise self._fail(f"truncated or padded: {self.file_size} bytes is not a whole number of tar blocks")
            try:
                self._tar = tarfile.TarFile(fileobj=self._f, mode="r", tarinfo=_StrictTarInfo,
                                            encoding="utf-8", errors="strict")
            except BundleFormatError as e:
                raise self._fail(str(e)) from e
            except Exception as e:  # tarfile on hostile bytes: TarError, and also OverflowError...
                raise self._fail(f"not a bundle (unreadable tar: {type(e).__name__}: {e})") from e
            self._metadata: list[tarfile.TarInfo] = []
            self._blobs: list[tarfile.TarInfo] = []
            self._cached: dict[str, bytes] = {}
            self._mtime: int | None = None  # the one mtime of every member, as the writer writes it
            self.format = 1  # from targets.json (unverified here: TUF verifies it with the rest)
            self._scan(max_members)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, reason: str) -> BundleFormatError:
        return BundleFormatError(f"{self.path}: {reason}")

    def _scan(self, max_members: int) -> None:
        """The header pass. Formats 1 and 2 put the metadata first: the targets count (an upper
        bound on the blob members, unverified) is known when the first blob comes, so a tar of a
        million tiny members is refused at the first one too many. Format 3 puts it last (the
        blobs were written while they downloaded, the metadata once the scan had decided): the
        members are walked to the end (at most ``max_members``), then the same checks run on
        what was found. Which layout the first member starts, the format in targets.json must
        name: one canonical form per format."""
        names: set[str] = set()
        part_digests: set[str] = set()
        count = 0
        roots = root_bytes = 0
        blob_cap: int | None = None  # set when the first blob comes: from the targets count
        self._last = False  # format 3: the blobs first, the metadata after them
        start = 0  # where the next member's first header block is
        while (ti := self._next()) is not None:
            count += 1
            if count > max_members:
                raise self._fail(f"more than {max_members} members")
            name = ti.name
            if not ti.isreg() or ti.sparse is not None:
                kind = {tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hard link", tarfile.DIRTYPE: "directory",
                        tarfile.CHRTYPE: "device", tarfile.BLKTYPE: "device", tarfile.FIFOTYPE: "fifo"}.get(ti.type, "special file")
                raise self._fail(f"member {name!r} is a {kind}; only regular files are allowed")
            is_metadata = METADATA_RE.fullmatch(name) is not None
            part = PART_RE.fullmatch(name)
            if not (is_metadata or part or BLOB_RE.fullmatch(name)):
                raise self._fail(f"unexpected member {name!r}")
            if name in names:
                raise self._fail(f"duplicate member {name!r}")
            names.add(name)
            if ti.offset_data + ti.size > self.file_size:
                raise self._fail(f"truncated: member {name!r} needs {ti.size} bytes past the end of the file")
            self._check_header(ti, start)
            start = ti.offset_data + ti.size + (-ti.size % BLOCK)
            self._check_padding(ti)
            if count == 1:
                self._last = not is_metadata
            if is_metadata:
                if self._blobs and not self._last:
                    raise self._fail(f"metadata member {name!r} after the blobs")
                role = _metadata_role(name)
                if ti.size > METADATA_LIMITS[role]:
                    raise self._fail(f"member {name!r} is {ti.size} bytes (limit {METADATA_LIMITS[role]})")
                if role == "root":
                    roots += 1
                    root_bytes += ti.size
                    if roots > MAX_ROOTS or root_bytes > MAX_ROOT_CHAIN:
                        raise self._fail(f"carries more than {MAX_ROOTS} root versions or {MAX_ROOT_CHAIN} bytes of them")
                self._metadata.append(ti)
            else:
                if self._metadata:
                    if self._last:
                        raise self._fail(f"blob member {name!r} after the metadata (format 3 puts every blob first)")
                    if blob_cap is None:
                        blob_cap = self._blob_cap()
                digest = (part or BLOB_RE.fullmatch(name)).group(1)  # type: ignore[union-attr]
                if part:
                    if not self._last:
                        self._check_parts(name)
                    if f"blobs/sha256/{digest}" in names:
                        raise self._fail(f"member {name!r}: the blob is also carried whole in this volume")
                    part_digests.add(digest)
                elif digest in part_digests:
                    raise self._fail(f"member {name!r}: parts of this blob are carried in this volume too")
                if blob_cap is not None and len(self._blobs) >= blob_cap:
                    raise self._too_many(blob_cap)
                self._blobs.append(ti)
        if self._last:
            self._check_last()
        elif self._metadata and "metadata/targets.json" in self._cached and self.format >= 3:
            raise self._fail(f"its metadata comes before the blobs, but its targets.json says bundle format {self.format}, "
                             "which puts the blobs first")

    def _too_many(self, blob_cap: int) -> BundleFormatError:
        return self._fail(f"more blob members than the {blob_cap - BLOB_MARGIN} targets that "
                          "metadata/targets.json lists (each blob is the content of a target)")

    def _check_parts(self, name: str) -> None:
        if self.format < 2:
            raise self._fail(f"member {name!r} is a part of a blob, which bundle format {self.format} "
                             "does not have (its targets.json says format 1)")

    def _check_last(self) -> None:
        """Format 3, once every member is known: the metadata after the blobs is what formats 1
        and 2 require before them (targets.json, which must say format 3), and the blobs are
        no more than it lists."""
        blob_cap = self._blob_cap(after=True)
        if self.format < 3:
            raise self._fail(f"its blobs come before the metadata, which bundle format {self.format} (its targets.json) "
                             "does not allow: format 3 does")
        if len(self._blobs) > blob_cap:
            raise self._too_many(blob_cap)
        for ti in self._blobs:
            if PART_RE.fullmatch(ti.name):
                self._check_parts(ti.name)

    def _check_header(self, ti: tarfile.TarInfo, start: int) -> None:
        """The member's header blocks are byte for byte those ``member_header`` writes: one
        canonical form, so no header field (mode, owner, format, pax records, mtime) can differ
        from what the writer wrote or carry bytes nothing verifies. The fields are named first,
        so the message says what is wrong."""
        if self._mtime is None:
            self._mtime = ti.mtime if isinstance(ti.mtime, int) else -1
        length = ti.offset_data - start
        raw = os.pread(self._f.fileno(), length, start) if 0 < length <= 3 * BLOCK else b""
        try:
            expected = member_header(ti.name, ti.size, self._mtime)
        except (ValueError, tarfile.TarError):
            expected = None
        if raw == expected:
            return
        name = ti.name
        if ti.mode != 0o644:
            raise self._fail(f"member {name!r} has mode {ti.mode:04o}; gapsync writes 0644")
        if (ti.uid, ti.gid, ti.uname, ti.gname) != (0, 0, "", ""):
            raise self._fail(f"member {name!r} has owner {ti.uid}/{ti.gid} ({ti.uname!r}/{ti.gname!r}); gapsync writes 0/0 and no names")
        extra = sorted(set(ti.pax_headers) - {"size"})
        if extra:
            raise self._fail(f"member {name!r} has pax records gapsync does not write ({', '.join(extra)[:80]})")
        if ti.mtime != self._mtime:
            raise self._fail(f"member {name!r} has mtime {ti.mtime}, the bundle's first member {self._mtime}")
        if raw[257:265] == b"ustar  \0" or (len(raw) > BLOCK and raw[BLOCK + 257:BLOCK + 265] == b"ustar  \0"):
            raise self._fail(f"member {name!r} has a GNU-format tar header; gapsync writes POSIX ustar/pax")
        raise self._fail(f"member {name!r}: its tar header is not in the canonical form gapsync writes "
                         "(format, fields or pax records differ)")

    def _check_padding(self, ti: tarfile.TarInfo) -> None:
        """The bytes between a member's data and the next block are zeros, as every tar writer
        leaves them: anything else would be a place to carry bytes that nothing verifies."""
        pad = -ti.size % BLOCK
        if pad:
            self._f.seek(ti.offset_data + ti.size)
            if self._f.read(pad).strip(b"\0"):
                raise self._fail(f"member {ti.name!r}: non-zero bytes in the padding after its data")

    def _blob_cap(self, after: bool = False) -> int:
        """How many blob members may follow: one per target of metadata/targets.json (unverified
        here, only an upper bound), so that a tar of a million tiny members is refused at the
        first one too many instead of after the whole header pass. A bundle whose targets
        metadata is missing or does not parse is refused here: nothing in it could be used."""
        ti = next((t for t in self._metadata if t.name == "metadata/targets.json"), None)
        if ti is None:
            raise self._fail("blob members without metadata/targets.json after them" if after
                             else "blob members without metadata/targets.json before them")
        self._cached[ti.name] = data = self._read_all(ti)  # read_metadata hands out these bytes, not a second copy
        try:
            signed = json.loads(data)["signed"]
            targets = signed["targets"]
            if not isinstance(targets, dict):
                raise TypeError("targets is not a mapping")
            self.format = bundle_format(signed, str(self.path))
        except BundleFormatError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, RecursionError) as e:
            raise self._fail(f"metadata/targets.json does not list targets ({type(e).__name__}); "
                             "its blob members cannot be checked") from e
        return len(targets) + BLOB_MARGIN

    def _next(self) -> tarfile.TarInfo | None:
        try:
            ti = self._tar.next()
        except BundleFormatError as e:
            raise self._fail(str(e)) from e
        except Exception as e:  # what tarfile raises on hostile headers is open-ended
            # (TarError, UnicodeError, ValueError, and OverflowError for a pax record that
            # claims a 20-digit length): every one of them means a damaged bundle, not a crash
            raise self._fail(f"damaged tar ({type(e).__name__}: {e})") from e
        if ti is None:
            self._check_end()
        return ti

    def _check_end(self) -> None:
        """tarfile stops quietly at a bad header or at EOF; a bundle must end with two zero
        blocks and the zeros that pad the file to a whole record, and with nothing else."""
        end = self._tar.offset
        tail = self.file_size - end
        if tail < 2 * BLOCK:
            raise self._fail("truncated: the end-of-archive blocks are missing")
        if tail > MAX_TRAILER:
            raise self._fail(f"{tail} bytes of unreadable data after the last member")
        self._f.seek(end)
        if self._f.read(tail).strip(b"\0"):
            raise self._fail(f"damaged member header or data after the end at offset {end}")
        expected = -(-(end + 2 * BLOCK) // RECORD) * RECORD
        if self.file_size < expected:
            raise self._fail(f"truncated: {self.file_size} bytes, the archive's record padding ends at {expected}")
        if self.file_size > expected:
            raise self._fail(f"{self.file_size - expected} zero bytes after the end of the archive "
                             f"(it ends at {expected}: two zero blocks padded to {RECORD} bytes)")

    @property
    def blob_count(self) -> int:
        return len(self._blobs)

    def read_metadata(self) -> dict[str, bytes]:
        """Every ``metadata/*`` member (name without the prefix -> bytes), size-capped by role."""
        return {ti.name.removeprefix("metadata/"): self._cached.get(ti.name) or self._read_all(ti) for ti in self._metadata}

    def _read_all(self, ti: tarfile.TarInfo) -> bytes:
        f = self._tar.extractfile(ti)
        assert f is not None
        try:
            data = f.read(ti.size)
        except (tarfile.TarError, OSError) as e:
            raise self._fail(f"truncated member {ti.name!r} ({e})") from e
        if len(data) != ti.size:
            raise self._fail(f"truncated member {ti.name!r}")
        return data

    def iter_blobs(self) -> Iterator[BlobMember]:
        for ti in self._blobs:
            m = BLOB_RE.fullmatch(ti.name)
            if m:
                yield BlobMember(m.group(1), ti.size, ti)
            else:
                p = PART_RE.fullmatch(ti.name)
                yield BlobMember(p.group(1), ti.size, ti, int(p.group(2)))  # type: ignore[union-attr]

    READ_AHEAD = 32 << 20  # bytes of a member asked of the disk ahead of the reads (``hashing.read_ahead``)

    def chunks(self, member: BlobMember) -> Iterator[bytes]:
        """The member's bytes, never more than its size; truncation is an error, not a short read.

        Read with ``pread`` at the member's data offset (the header pass checked that members are
        plain files, contiguous, inside the file): one copy per chunk instead of tarfile's
        buffered reader over a seek-and-read file object, and no GIL held between the reads, so
        the hash of one chunk (ThreadedHash) overlaps the read of the next."""
        fd = self._f.fileno()
        start = member._info.offset_data
        got = ahead = 0
        try:
            while got < member.size:
                while ahead - got < self.READ_AHEAD and ahead < member.size:  # the disk reads on while this is hashed
                    step = min(self.READ_AHEAD // 2, member.size - ahead)
                    read_ahead(fd, start + ahead, step)
                    ahead += step
                chunk = os.pread(fd, min(CHUNK, member.size - got), start + got)
                if not chunk:
                    break
                got += len(chunk)
                yield chunk
        except OSError as e:
            raise self._fail(f"truncated blob {member.digest} ({e})") from e
        if got != member.size:
            raise self._fail(f"truncated blob {member.digest}")

    def read_blob_bytes(self, member: BlobMember, limit: int) -> bytes:
        if member.part:
            raise self._fail(f"{member.name} is a part of a blob, not a whole blob")
        if member.size > limit:
            raise self._fail(f"blob {member.digest} is {member.size} bytes (limit {limit})")
        data = b"".join(self.chunks(member))
        if hashlib.sha256(data).hexdigest() != member.digest:
            raise DigestMismatchError(f"{self.path}: blob {member.digest} does not match its name")
        return data
