"""Compressed streams: decompress as a stream and scan what comes out, at any nesting.

joblib compresses the whole pickle stream (zlib, gzip, bz2, lzma, xz, lz4), ``pandas.read_pickle``
decompresses by file name (``.gz .bz2 .zip .xz .zst .tar``), and image layers are gzip or zstd
tars: nothing is visible until it is decompressed. Decompression is streamed (a bomb costs time,
not memory) and charged to the artifact's budget (:mod:`gapsync.scanner.budget`); its output
goes back to the dispatcher, which finds the pickle, tar, zip or further compression inside.

A stream that a loader would decompress but the scanner cannot (corrupt data, a name that
promises a compression the bytes do not have, lz4 without the ``lz4`` package) is a high finding:
what cannot be read was not scanned, and it is not waved through.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.formats.detect import Format
from gapsync.scanner.formats.streams import CHUNK, decompressing

if TYPE_CHECKING:
    from gapsync.scanner.budget import Budget


class _ZstdError(Exception):
    pass


def _decompressor(fmt: Format, alone: bool = False):
    if fmt in (Format.ZLIB, Format.JOBLIB_ZFILE):
        return zlib.decompressobj(15)
    if fmt is Format.GZIP:
        return zlib.decompressobj(31)
    if fmt is Format.BZIP2:
        return bz2.BZ2Decompressor()
    if fmt in (Format.XZ, Format.LZMA):
        # a raw .lzma file whose properties byte is not the usual 0x5d has no magic number:
        # known by its name only, it is read as the "alone" format, as lzma.open(name) would
        return lzma.LZMADecompressor(lzma.FORMAT_ALONE if alone else lzma.FORMAT_AUTO)
    if fmt is Format.LZ4:
        try:
            import lz4.frame
        except ImportError:
            return None
        return lz4.frame.LZ4FrameDecompressor()
    raise ValueError(fmt)


class _Counted(io.RawIOBase):
    """A stream whose output is charged to the budget (zstd's reader decompresses by itself)."""

    def __init__(self, inner, budget) -> None:
        super().__init__()
        self._inner, self._budget = inner, budget
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        import zstandard

        try:
            data = self._inner.read(len(b))
        except zstandard.ZstdError as e:
            self.error = OSError(f"corrupt zstd data: {e}")
            raise self.error from e
        if self._budget is not None:
            self._budget.decompressed(len(data))
        b[:len(data)] = data
        return len(data)


def zstd_stream(f: BinaryIO, budget: Budget | None) -> io.BufferedReader:
    import zstandard

    # read_across_frames: zstd files may hold several frames, and the zstd tool and
    # zstandard.open() read them all; the window is capped so a frame cannot ask for GBs of memory
    reader = zstandard.ZstdDecompressor(max_window_size=1 << 27).stream_reader(
        f, read_size=64 * 1024, read_across_frames=True, closefd=False)
    return io.BufferedReader(_Counted(reader, budget), CHUNK)


class _Prefixed(io.RawIOBase):
    """``first`` then the rest of ``f``: a byte read ahead, given back."""

    def __init__(self, first: bytes, f: BinaryIO) -> None:
        super().__init__()
        self._first, self._f = first, f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._first:
            n = min(len(b), len(self._first))
            b[:n], self._first = self._first[:n], self._first[n:]
            return n
        data = self._f.read(len(b))
        b[:len(data)] = data
        return len(data)


def _after_zfile_header(f: BinaryIO) -> BinaryIO:
    """joblib's read_zfile: skip b"ZF" and the 19-character length, and one space after it if
    there is one (joblib <= 0.8.4 under Python 2 wrote a wider header); the zlib stream follows."""
    from gapsync.scanner.formats.detect import JOBLIB_ZFILE_HEADER

    f.read(JOBLIB_ZFILE_HEADER)
    nxt = f.read(1)
    return f if nxt == b" " else io.BufferedReader(_Prefixed(nxt, f), CHUNK)


def open_decompressed(f: BinaryIO, fmt: Format, budget: Budget | None,
                      alone: bool = False) -> io.BufferedReader | None:
    """The decompressed stream of ``f`` (None: the codec is not available here)."""
    if fmt is Format.ZSTD:
        return zstd_stream(f, budget)
    if fmt is Format.JOBLIB_ZFILE:
        f = _after_zfile_header(f)
    d = _decompressor(fmt, alone)
    if d is None:
        return None
    # every loader reads on past the end of the first stream (gzip members, bz2 and xz streams,
    # lz4 frames, joblib's zlib streams): so does the scan
    return decompressing(f, d, budget, again=lambda: _decompressor(fmt, alone), zero_padding=fmt is Format.GZIP)


def handler_for(fmt: Format, by_name: bool = False) -> Callable[[BinaryIO, Where], list[Finding]]:
    """The handler for one compression. ``by_name``: the bytes have no magic number for it, only
    the name says so (``x.lzma``, a ``.gz`` that is not gzip): failing to decompress is then the
    finding ``compressed.unreadable``."""

    def scan(f: BinaryIO, where: Where) -> list[Finding]:
        from gapsync.scanner.models import scan_stream

        budget = where.budget
        if budget is not None:
            budget.entry()
        stream = open_decompressed(f, fmt, budget, alone=by_name and fmt is Format.LZMA)
        if stream is None:
            return [finding(where, "compressed.unsupported", Severity.HIGH,
                            f"{fmt.value}-compressed data cannot be decompressed here (install the 'lz4' package); "
                            "its content was not scanned")]
        inner = where.child(f"<{fmt.value}>")
        inner = inner.named(_strip_suffix(where.name))
        try:
            if by_name:
                stream.peek(1)  # fails at once when the bytes are not this compression at all
            _, found = scan_stream(stream, inner)
        except OSError as e:
            if by_name:
                return [finding(where, "compressed.unreadable", Severity.HIGH,
                                f"the name says {fmt.value} but the data cannot be decompressed as {fmt.value} ({e}); "
                                "a loader that goes by the name reads something the scanner could not: not scanned")]
            return [finding(where, "compressed.corrupt", Severity.HIGH,
                            f"{fmt.value} data is corrupt ({e}): a loader reads what comes before the damage, "
                            "which was scanned, but the rest cannot be read the way a loader would read it")]
        err = getattr(getattr(stream, "raw", None), "error", None)
        if err is not None and not any(x.rule.startswith("pickle.") and x.severity is Severity.HIGH for x in found):
            found.append(finding(where, "compressed.corrupt", Severity.HIGH,
                                 f"{fmt.value} data is corrupt ({err}): what came before the damage was scanned, "
                                 "the rest cannot be read the way a loader would read it"))
        return found

    return scan


def _strip_suffix(name: str) -> str:
    base, dot, _ = name.rpartition(".")
    return base if dot and "/" not in _ else name
