"""The model scanner: detect each file's format by content and hand it to that format's analyser.

This is the one dispatcher. Every container (zip, compressed stream, nested pickle) calls
:func:`scan_stream` again for what it holds, so a pickle is found whether it is a file, a zip
entry, the payload of an ``.npy`` object array or the inside of a gzip'd joblib file.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO, ClassVar, cast

from gapsync.fsutil import open_blob
from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.budget import DEFAULT_LIMITS, Budget, BudgetExceeded
from gapsync.scanner.formats.detect import COMPRESSED, HEAD_SIZE, Format, by_name, detect
from gapsync.scanner.formats.pickles import analyse_pickles
from gapsync.scanner.formats.streams import CHUNK, ByteReader

SPOOL_IN_MEMORY = 32 << 20  # a container that must be seeked but came from a compressed entry


class ModelScanner:
    """Scans model files of every supported format; reads bytes, never loads them."""

    name: ClassVar[str] = "model"

    def __init__(self, limits=DEFAULT_LIMITS) -> None:
        self.limits = limits

    def scan_file(self, path: Path, display_name: str, budget: Budget | None = None) -> Iterator[Finding]:
        """Findings for one file. ``budget``: the artifact's (shared by its files); by default
        one for this file alone, from the scanner's limits and the file's size."""
        with open_blob(path) as f:  # a file, or a range of the bundle being written (fsutil.HeldPath)
            size = f.seek(0, io.SEEK_END)
            f.seek(0)
            if budget is None:
                budget = self.limits.for_size(size)
            kind, findings = scan_stream(f, Where(display_name, size=size, budget=budget))
            yield from findings


def budget_finding(where: Where, e: BudgetExceeded) -> Finding:
    return finding(Where(where.file), "scan.budget", Severity.HIGH,
                   f"scan stopped: {e}; what was not scanned cannot be trusted", budget=e.budget)


Handler = Callable[[BinaryIO, Where], list[Finding]]
# What scan_stream reads: files, tarfile's and zipfile's member streams, the scanner's own windows
# and decompressors. The analysers call only read/readinto/seek/tell/seekable/peek on them.
Readable = IO[bytes] | io.RawIOBase | io.BufferedIOBase


def scan_stream(f: Readable, where: Where, pickle_hint: bool = False,
                zip_tail: bool = True) -> tuple[Format, list[Finding]]:
    """Detect the format of the bytes in ``f`` (positioned at their start) and analyse them.

    ``pickle_hint``: the container says this is a pickle (a ``*.pkl`` entry of a torch zip), so
    bytes that fail to parse as a pickle are reported rather than left alone.
    ``zip_tail``: also look for a zip whose end record closes the data (a polyglot); off for
    bytes that no loader opens as a file (torch's tensor storage records).
    Returns the detected format (``PICKLE`` for protocol 0/1 pickles found by parsing) and the
    findings.

    The scan is charged to ``where.budget``; called without one (a top-level stream), it gets a
    budget of its own, and running out of it ends the scan with the finding ``scan.budget``.
    """
    stream = cast(BinaryIO, f)  # one view for the analysers (see Readable)
    if where.depth and where.budget is not None:  # inside a container: its scan owns the budget
        return _scan_stream(stream, where, pickle_hint, zip_tail)
    if where.budget is None:
        where = Where(where.file, where.inner, where.size, where.depth, DEFAULT_LIMITS.for_size(where.size or 0),
                      where.label)
    try:  # the top of a file (or a stream scanned on its own): a budget that runs out ends it here
        return _scan_stream(stream, where, pickle_hint, zip_tail)
    except BudgetExceeded as e:
        return Format.UNKNOWN, [budget_finding(where, e)]


def _scan_stream(f: BinaryIO, where: Where, pickle_hint: bool, zip_tail: bool) -> tuple[Format, list[Finding]]:
    budget = where.budget
    if where.depth > budget.limits.depth:  # type: ignore[union-attr]
        budget.depth(where.depth)  # type: ignore[union-attr]
    f, head = _peekable(f)
    fmt = detect(head, where.size)
    if fmt in (Format.UNKNOWN, Format.JSON) and where.name.lower().endswith(".jinja"):  # "{%" looks like JSON
        # transformers loads chat_template.jinja (and additional_chat_templates/*.jinja) by name
        # and renders it: judged by its syntax tree like a template inside tokenizer_config.json
        from gapsync.scanner.formats.templates import scan_jinja

        return fmt, scan_jinja(f, where)
    named = by_name(where.name) if fmt is Format.UNKNOWN else None
    unreadable: list[Finding] = []
    if named is not None and named not in (Format.SEVENZIP, Format.ZIP):
        # no magic number, but a loader that goes by the name would decompress or unpack it
        start = f.tell() if _seekable(f) else None
        found = _by_name(named, f, head, where)
        if found is not None:
            if start is None or any(x.rule != "compressed.unreadable" for x in found):
                return named, found
            # not that compression at all: also read the bytes as what they are (a loader that
            # does not go by the name, pickle.load(open(...)), would)
            unreadable = found
            f.seek(start)
    if fmt in _NEEDS_SEEK and not _seekable(f):
        f = _spool(f)
    handler = _handler(fmt)
    if handler is not None:
        found = handler(f, where)
        if fmt is Format.PICKLE and zip_tail:
            found += _zip_behind(f, where)
        return fmt, found
    # No magic number: a protocol 0/1 pickle, or data that no loader here would run.
    result = analyse_pickles(ByteReader(f), where, known_pickle=pickle_hint or fmt is Format.PICKLE)
    if result.is_pickle:
        return Format.PICKLE, unreadable + result.findings.to_list() + (_zip_behind(f, where) if zip_tail else [])
    zipped = _zip_behind(f, where) if zip_tail else []
    if zipped or unreadable:
        return Format.ZIP if zipped else fmt, unreadable + zipped
    if where.depth == 0 and fmt is Format.UNKNOWN:
        return fmt, [finding(where, "format.unrecognised", Severity.INFO,
                             "not a model format gapsync recognises and not a pickle; nothing in it is loadable as a model")]
    return fmt, []


def _by_name(fmt: Format, f: BinaryIO, head: bytes, where: Where) -> list[Finding] | None:
    """Read the bytes as the container or compression their name promises; None: not that."""
    if fmt in COMPRESSED:
        from gapsync.scanner.formats import compressed

        return compressed.handler_for(fmt, by_name=True)(f, where)
    if fmt is Format.TAR and _tar_checksum_ok(head):
        # an old (V7) tar has no "ustar" magic; tarfile (and so pandas) reads it by its checksum
        from gapsync.scanner.formats import tars

        return tars.scan_tar(f, where)
    return None


def _tar_checksum_ok(head: bytes) -> bool:
    if len(head) < 512:
        return False
    field = head[148:156].replace(b"\0", b" ").strip()
    try:
        want = int(field, 8)
    except ValueError:
        return False
    block = head[:148] + b" " * 8 + head[156:512]
    return want in (sum(block), sum(b - 256 if b > 127 else b for b in block))


def _zip_behind(f: BinaryIO, where: Where) -> list[Finding]:
    """A zip whose start is not at offset 0 (self-extractors, pickle/zip polyglots).

    ``zipfile`` finds a zip by its end record, so such a file is a zip to some loaders and
    something else to others: scan it both ways.
    """
    from gapsync.scanner.formats import zips

    if not _seekable(f) or where.size is None:
        return []
    if not zips.has_zip_tail(f, where.size):
        return []
    found = zips.scan_zip(f, where)
    if all(x.rule == "zip.malformed" for x in found):
        return []  # an end-record signature by chance in other data
    return found


_NEEDS_SEEK = frozenset({Format.ZIP, Format.HDF5})


def _seekable(f: BinaryIO) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, ValueError):
        return False


def _peekable(f: BinaryIO) -> tuple[BinaryIO, bytes]:
    """The first HEAD_SIZE bytes, without consuming them."""
    if _seekable(f):
        start = f.tell()
        head = f.read(HEAD_SIZE)
        f.seek(start)
        return f, head
    buffered = f if isinstance(f, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, f), CHUNK)
    head = buffered.peek(HEAD_SIZE)[:HEAD_SIZE]
    return buffered, head


def _spool(f: BinaryIO) -> BinaryIO:
    """Copy a forward-only stream to a temporary file (memory first, then disk) to allow seeking."""
    import shutil
    import tempfile

    spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # returned to the caller, who closes it
    shutil.copyfileobj(f, spooled, CHUNK)
    spooled.seek(0)
    return spooled  # type: ignore[return-value]


def _pickle_handler(f: BinaryIO, where: Where) -> list[Finding]:
    return analyse_pickles(ByteReader(f), where, known_pickle=True).findings.to_list()


# format -> "module:function" under gapsync.scanner. Imported on first use, not at start-up:
# each format module imports this one for nested scans, and a scan of a pickle should not pay
# for the tar, GGUF or HDF5 parsers.
_HANDLER_NAMES: dict[Format, str] = {
    Format.ZIP: "zips:scan_zip",
    Format.TAR: "tars:scan_tar",
    Format.NPY: "numpy_files:scan_npy",
    Format.SAFETENSORS: "safetensors:scan_safetensors",
    Format.GGUF: "gguf:scan_gguf",
    Format.HDF5: "hdf5:scan_hdf5",
    Format.JSON: "jsonfiles:scan_json",
    Format.PROTOBUF: "protobuf_models:scan_protobuf",
    Format.SEVENZIP: "sevenzip:scan_7z",
}
_loaded: dict[Format, Handler] = {Format.PICKLE: _pickle_handler}


def _handler(fmt: Format) -> Handler | None:
    found = _loaded.get(fmt)
    if found is None:
        if fmt in COMPRESSED:
            from gapsync.scanner.formats import compressed

            found = compressed.handler_for(fmt)
        elif fmt in _HANDLER_NAMES:
            module, func = _HANDLER_NAMES[fmt].split(":")
            found = getattr(importlib.import_module(f"gapsync.scanner.formats.{module}"), func)
        else:
            return None
        _loaded[fmt] = found
    return found
