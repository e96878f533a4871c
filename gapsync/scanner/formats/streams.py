"""Byte streams for the scanners: buffered sequential reading, windows and decompression.

Why this module exists: the scanners must read multi-GB files with flat memory and must never
trust a length field. Every format parser reads through :class:`ByteReader`, which reads in
chunks, skips (seeks when it can) instead of reading data it does not need, and raises
:class:`Truncated` instead of returning short data. Zip entries are opened as windows over the
parent file (stored) or as decompressing streams (deflate, bzip2), so nothing is extracted to disk.
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from gapsync import fsutil

if TYPE_CHECKING:
    from gapsync.scanner.budget import Budget

CHUNK = 1 << 20  # 1 MiB: the unit of reading; memory use is a few of these
FIRST_READ = 16 << 10  # the first read of a stream: a tensor entry of a checkpoint is sniffed, not read


class Truncated(Exception):
    """The stream ended before the number of bytes a format said would follow."""

    def __init__(self, wanted: int, got: int, offset: int) -> None:
        super().__init__(f"needed {wanted} bytes at offset {offset}, only {got} left")
        self.wanted, self.got, self.offset = wanted, got, offset


class ByteReader:
    """Sequential reader with a position, exact reads and cheap skips over any ``BinaryIO``."""

    budget: Budget | None = None  # the scan budget, for parsers that charge their steps through the reader
    steps = 0  # ... and their count since the last charge

    def __init__(self, stream: BinaryIO, start: int = 0) -> None:
        self._f = stream
        self._buf = b""
        self._i = 0
        self._base = start  # stream position of _buf[0]
        self._eof = False
        self._next = FIRST_READ  # grows to CHUNK: most streams are abandoned after a few bytes
        self._read = getattr(stream, "read1", stream.read)
        try:
            self._seekable = bool(stream.seekable())
        except (AttributeError, OSError, ValueError):
            self._seekable = False

    @property
    def pos(self) -> int:
        return self._base + self._i

    def _fill(self, n: int) -> bool:
        """Make ``n`` bytes available from the current position; False if the stream ends first."""
        while len(self._buf) - self._i < n and not self._eof:
            # read1: what is there with at most one underlying read, so data that precedes a
            # failure underneath (corrupt compression) is delivered before the error is
            more = self._read(max(self._next, n - (len(self._buf) - self._i)))
            self._next = min(self._next * 2, CHUNK)
            if not more:
                self._eof = True
                break
            self._base += self._i
            self._buf = self._buf[self._i:] + more
            self._i = 0
        return len(self._buf) - self._i >= n

    def at_eof(self) -> bool:
        return not self._fill(1)

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._i:self._i + n]

    def read_byte(self) -> int:
        if self._i >= len(self._buf) and not self._fill(1):
            raise Truncated(1, 0, self.pos)
        b = self._buf[self._i]
        self._i += 1
        return b

    def read(self, n: int) -> bytes:
        i = self._i
        j = i + n
        if i <= j <= len(self._buf):  # the common case: already buffered (and n is not negative)
            self._i = j
            return self._buf[i:j]
        if n < 0:
            raise ValueError("negative length")
        if not self._fill(n):
            got = len(self._buf) - self._i
            raise Truncated(n, got, self.pos)
        out = self._buf[self._i:self._i + n]
        self._i += n
        return out

    def unpack(self, fmt: struct.Struct) -> Any:
        """The one value of a fixed-size ``fmt`` at the current position (no slice is made)."""
        n = fmt.size
        if len(self._buf) - self._i < n and not self._fill(n):
            raise Truncated(n, len(self._buf) - self._i, self.pos)
        i = self._i
        self._i = i + n
        return fmt.unpack_from(self._buf, i)[0]

    def skip(self, n: int) -> None:
        """Advance ``n`` bytes without keeping them; raises :class:`Truncated` past the end."""
        have = len(self._buf) - self._i
        if n <= have:
            self._i += n
            return
        start = self.pos
        n -= have
        self._base += len(self._buf)
        self._buf, self._i = b"", 0
        if self._seekable:
            end = self._f.seek(0, io.SEEK_END)
            target = self._base + n
            if target > end:
                self._f.seek(end)
                self._base = end
                self._eof = True
                raise Truncated(n + have, end - start, start)
            self._f.seek(target)
            self._base = target
            return
        while n:
            more = self._f.read(min(CHUNK, n))
            if not more:
                self._eof = True
                raise Truncated(n + have, self._base - start, start)
            n -= len(more)
            self._base += len(more)

    def readline(self, limit: int) -> tuple[bytes, bool]:
        """Read through the next ``\\n``; return (line without it, longer_than_limit).

        A line longer than ``limit`` is consumed to its end but only its first ``limit`` bytes
        are returned, so a hostile multi-GB "line" costs time, not memory.
        """
        parts: list[bytes] = []
        kept = total = 0
        while True:
            if self._i >= len(self._buf) and not self._fill(1):
                raise Truncated(1, 0, self.pos)
            j = self._buf.find(b"\n", self._i)
            end = len(self._buf) if j < 0 else j
            piece = self._buf[self._i:end]
            total += len(piece)
            if kept < limit:
                take = piece[:limit - kept]
                parts.append(take)
                kept += len(take)
            self._i = end
            if j >= 0:
                self._i += 1
                return b"".join(parts), total > limit


class Window(fsutil.Window):
    """A read-only, seekable view of ``size`` bytes of ``f`` starting at ``start`` (a stored zip
    entry); a seek is clamped to the view rather than refused."""

    def __init__(self, f: BinaryIO, start: int, size: int) -> None:
        def pread(n: int, offset: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        super().__init__(pread, start, size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        return self._pos


class _Decompressing(io.RawIOBase):
    """A forward-only stream of what a decompressor makes of ``src``.

    Works with any decompressor object that has ``decompress(data, max_length)`` and ``eof``
    (zlib, bz2, lzma, lz4.frame). Output is produced a chunk at a time, so a decompression bomb
    costs time, not memory. Corrupt input: everything decompressed before the damage is still
    returned (for zlib, to within a few dozen input bytes), then reads raise ``OSError``, so the
    scanner analyses what a loader would have read before it failed. A cut-off stream just ends.
    """

    IN_CHUNK = 64 * 1024

    def __init__(self, src: BinaryIO, decomp, budget: Budget | None = None, again=None) -> None:
        super().__init__()
        self._src, self._d, self._pending, self._done = src, decomp, b"", False
        self._zlib = hasattr(decomp, "unconsumed_tail")
        self._error: OSError | None = None
        self._budget = budget
        self._again = again  # makes the decompressor of a next stream/member (gzip, bz2, xz, lz4, zlib)
        self._feed = b""  # input already read that belongs to the next stream

    def readable(self) -> bool:
        return True

    @property
    def error(self) -> OSError | None:
        """The decompression error met so far, if any (the data before it was delivered)."""
        return self._error

    def _read(self) -> bytes:
        if self._feed:
            data, self._feed = self._feed, b""
            return data
        return self._src.read(self.IN_CHUNK)

    def _next_stream(self) -> bool:
        """After the end of one stream: the next one, as gzip.open, bz2.open, lzma.open and joblib
        read concatenated members (gzip's zero padding after a member is skipped, as gzip does)."""
        if self._again is None:
            return False
        rest = self._d.unused_data
        while True:
            rest = rest.lstrip(b"\0") if self._again_pads else rest
            if rest:
                break
            rest = self._src.read(self.IN_CHUNK)
            if not rest:
                return False
        self._d = self._again()
        self._zlib = hasattr(self._d, "unconsumed_tail")
        self._feed = rest
        return True

    _again_pads = False

    def _more(self) -> bytes:
        d = self._d
        if d.eof:
            if not self._next_stream():
                self._done = True
                return b""
            d = self._d
        if self._zlib:
            data = d.unconsumed_tail or self._read()
        else:
            data = self._read() if d.needs_input else b""
        if not data and (self._zlib or d.needs_input):
            self._done = True
            return b""
        snapshot = d.copy() if self._zlib else None
        try:
            return d.decompress(data, CHUNK)
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError, RuntimeError) as e:
            self._done = True
            self._error = OSError(f"corrupt compressed data: {e}")
            return self._salvage(snapshot, data) if snapshot is not None else b""

    @staticmethod
    def _salvage(d, data: bytes) -> bytes:
        """Output of ``data`` up to the damage, fed in small pieces to a copy of the old state."""
        out = []
        for i in range(0, len(data), 32):
            before = d.copy()
            try:
                out.append(d.decompress(data[i:i + 32]))
            except zlib.error:
                d = before
                for j in range(i, min(i + 32, len(data))):  # the last good bytes, one at a time
                    try:
                        out.append(d.decompress(data[j:j + 1]))
                    except zlib.error:
                        break
                break
        return b"".join(out)

    def readinto(self, b) -> int:
        want = len(b)
        while len(self._pending) < want and not self._done:
            more = self._more()
            if self._budget is not None:
                self._budget.decompressed(len(more))
            self._pending += more
        if not self._pending and self._error is not None:
            raise self._error
        n = min(want, len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def decompressing(src: BinaryIO, decomp: Any, budget: Budget | None = None, again: Callable[[], Any] | None = None,
                  zero_padding: bool = False) -> io.BufferedReader:
    """Wrap ``src`` so that reads return what ``decomp`` makes of it (see :class:`_Decompressing`);
    every byte that comes out is charged to ``budget`` (decompressed bytes, and time). ``again``:
    a factory of decompressors for the streams that follow the first one (concatenated members);
    ``zero_padding``: zero bytes between members are skipped (gzip)."""
    raw = _Decompressing(src, decomp, budget, again)
    raw._again_pads = zero_padding
    return io.BufferedReader(raw, CHUNK)


def inflate_stream(src: BinaryIO, wbits: int = -15, budget: Budget | None = None) -> BinaryIO:
    """Deflate data: raw (zip method 8, the default), zlib (``wbits=15``) or gzip (``wbits=31``)."""
    return decompressing(src, zlib.decompressobj(wbits), budget)


def bunzip_stream(src: BinaryIO, budget: Budget | None = None) -> BinaryIO:
    return decompressing(src, bz2.BZ2Decompressor(), budget)
