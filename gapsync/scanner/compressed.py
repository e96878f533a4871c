"""Compressed streams (joblib's zlib, gzip, bz2, lzma, xz and lz4 files): decompress and rescan.

joblib compresses the whole pickle stream, so nothing is visible until it is decompressed. The
decompression is streamed (a decompression bomb costs time, not memory) and its output goes back
to the dispatcher, which finds the pickle (and joblib's inline array data) inside. ``lz4`` is
optional in joblib; when the ``lz4`` package is missing the file cannot be scanned, which is a
finding of its own (high: a loader with lz4 would run whatever is inside).
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.detect import Format
from gapsync.scanner.streams import decompressing


def _decompressor(fmt: Format):
    if fmt is Format.ZLIB:
        return zlib.decompressobj(15)
    if fmt is Format.GZIP:
        return zlib.decompressobj(31)
    if fmt is Format.BZIP2:
        return bz2.BZ2Decompressor()
    if fmt in (Format.XZ, Format.LZMA):
        return lzma.LZMADecompressor(lzma.FORMAT_AUTO)
    if fmt is Format.LZ4:
        try:
            import lz4.frame  # type: ignore[import-not-found]
        except ImportError:
            return None
        return lz4.frame.LZ4FrameDecompressor()
    raise ValueError(fmt)


def handler_for(fmt: Format) -> Callable[[BinaryIO, Where], list[Finding]]:
    def scan(f: BinaryIO, where: Where) -> list[Finding]:
        from gapsync.scanner.models import scan_stream

        d = _decompressor(fmt)
        if d is None:
            return [finding(where, "compressed.unsupported", Severity.HIGH,
                            f"{fmt.value}-compressed data cannot be decompressed here (install the 'lz4' package); "
                            "its content was not scanned")]
        inner = where.child(f"<{fmt.value}>")
        try:
            _, found = scan_stream(decompressing(f, d), inner)
        except OSError as e:
            return [finding(where, "compressed.corrupt", Severity.MEDIUM,
                            f"{fmt.value} data is corrupt ({e}); what came before the damage was scanned")]
        return found

    return scan
