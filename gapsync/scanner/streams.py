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
import zlib
from typing import BinaryIO

CHUNK = 1 << 20  # 1 MiB: the unit of reading; memory use is a few of these


class Truncated(Exception):
    """The stream ended before the number of bytes a format said would follow."""

    def __init__(self, wanted: int, got: int, offset: int) -> None:
        super().__init__(f"needed {wanted} bytes at offset {offset}, only {got} left")
        self.wanted, self.got, self.offset = wanted, got, offset


class ByteReader:
    """Sequential reader with a position, exact reads and cheap skips over any ``BinaryIO``."""

    def __init__(self, stream: BinaryIO, start: int = 0) -> None:
        self._f = stream
        self._buf = b""
        self._i = 0
        self._base = start  # stream position of _buf[0]
        self._eof = False
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
            more = self._f.read(max(CHUNK, n - (len(self._buf) - self._i)))
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
        if n < 0:
            raise ValueError("negative length")
        if not self._fill(n):
            got = len(self._buf) - self._i
            raise Truncated(n, got, self.pos)
        out = self._buf[self._i:self._i + n]
        self._i += n
        return out

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
        """Read through the next ``\\n``; return (line without it, truncated_to_limit).

        A line longer than ``limit`` is consumed to its end but only its first ``limit`` bytes
        are returned, so a hostile multi-GB "line" costs time, not memory.
        """
        parts: list[bytes] = []
        kept = 0
        cut = False
        while True:
            if self._i >= len(self._buf) and not self._fill(1):
                raise Truncated(1, 0, self.pos)
            j = self._buf.find(b"\n", self._i)
            end = len(self._buf) if j < 0 else j
            piece = self._buf[self._i:end]
            if kept < limit:
                parts.append(piece[:limit - kept])
                kept += min(len(piece), limit - kept)
            if len(piece) > 0 and kept >= limit and (j < 0 or len(piece) > limit):
                cut = cut or sum(len(p) for p in parts) < kept + len(piece) or len(piece) > limit
            self._i = end
            if j >= 0:
                self._i += 1
                return b"".join(parts), cut
            if kept >= limit:
                cut = True


class Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes of ``f`` starting at ``start`` (a stored zip entry)."""

    def __init__(self, f: BinaryIO, start: int, size: int) -> None:
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        b[:len(data)] = data
        self._pos += len(data)
        return len(data)


class _Decompressing(io.RawIOBase):
    """A forward-only stream of what a decompressor makes of ``src``; reports corrupt data as OSError."""

    def __init__(self, src: BinaryIO, decomp, limit: int | None = None) -> None:
        super().__init__()
        self._src, self._d, self._pending, self._done = src, decomp, b"", False
        self._limit = limit
        self._out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        want = len(b)
        while len(self._pending) < want and not self._done:
            if self._limit is not None and self._out >= self._limit:
                self._done = True
                break
            if getattr(self._d, "eof", False):
                self._done = True
                break
            tail = getattr(self._d, "unconsumed_tail", b"")
            data = tail if tail else self._src.read(CHUNK)
            if not data and not tail:
                if hasattr(self._d, "flush"):
                    self._pending += self._d.flush()
                self._done = True
                break
            try:
                if isinstance(self._d, zlib._Decompress):  # type: ignore[attr-defined]
                    out = self._d.decompress(data, CHUNK)
                else:
                    out = self._d.decompress(data, CHUNK)
            except (zlib.error, OSError, EOFError, ValueError) as e:
                raise OSError(f"corrupt compressed data: {e}") from e
            self._out += len(out)
            self._pending += out
            if not isinstance(self._d, zlib._Decompress):  # type: ignore[attr-defined]
                # bz2/lzma keep their own unconsumed input; keep feeding b"" until they ask for more
                while getattr(self._d, "needs_input", True) is False and len(self._pending) < want:
                    out = self._d.decompress(b"", CHUNK)
                    if not out:
                        break
                    self._pending += out
                    self._out += len(out)
        n = min(want, len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def inflate_stream(src: BinaryIO, raw: bool = True) -> BinaryIO:
    """Deflate data (zip method 8 when ``raw``; a zlib stream otherwise) as a readable stream."""
    return io.BufferedReader(_Decompressing(src, zlib.decompressobj(-15 if raw else 15)), CHUNK)


def bunzip_stream(src: BinaryIO) -> BinaryIO:
    return io.BufferedReader(_Decompressing(src, bz2.BZ2Decompressor()), CHUNK)
