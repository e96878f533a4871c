"""Zip containers (PyTorch checkpoints, .npz, .keras, and any other zip): read by hand.

Why not ``zipfile``: scanners built on it have been bypassed by the differences between it and
the loaders (CVE-2025-1944: the central directory and the local header name an entry
differently; CVE-2025-1945: flag bits that ``zipfile`` refuses and torch ignores;
CVE-2025-10156: a bad CRC makes ``zipfile`` raise and the scan stop while torch loads the file).
This module parses the central directory and every local header itself, reports each
inconsistency as a finding, and scans **every** entry by its content (not its name), whatever
the flags say, so that whichever reading a loader chooses, the bytes it would load were scanned.
Entries are streamed (stored entries are windows on the file; deflate and bzip2 are decompressed
on the fly); tensor data is never read unless it looks like something loadable.
"""

from __future__ import annotations

import io
import lzma
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding
from gapsync.scanner.formats.detect import COMPRESSED, Format
from gapsync.scanner.formats.streams import CHUNK, Window, bunzip_stream, decompressing, inflate_stream

EOCD_SIG = b"PK\x05\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
CDIR_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
MAX_ENTRIES = 200_000
CRC_CHECK_LIMIT = 64 << 20  # analysed entries up to this size get their CRC verified (a second read)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pck", ".pt", ".pth", ".bin", ".joblib", ".data")
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_PATCHED, FLAG_STRONG = 0x1, 0x8, 0x20, 0x40
METHODS = {0: "stored", 8: "deflate", 12: "bzip2", 14: "lzma", 93: "zstd"}


@dataclass
class Entry:
    """One central-directory record, and what its local header says."""

    name: str
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    header_offset: int
    index: int
    data_offset: int | None = None
    local_name: str | None = None


class ZipFormatError(Exception):
    """The central directory cannot be read at all."""


def scan_zip(f: BinaryIO, where: Where) -> list[Finding]:
    """Findings for a zip file: structure problems, then every entry's content."""
    out: list[Finding] = []
    size = f.seek(0, io.SEEK_END)
    try:
        budget = where.budget
        entries = read_central_directory(f, size, None if budget is None else budget.max_entries - budget.entries)
    except ZipFormatError as e:
        return [finding(where, "zip.malformed", Severity.HIGH,
                        f"zip central directory unreadable ({e}): a loader that tolerates this may still read "
                        "entries, which were not scanned")]
    out.extend(_check_structure(f, size, entries, where))
    names = [e.name for e in entries]
    torch_like = any(n.endswith("data.pkl") for n in names)
    if torch_like and any("/code/" in n or n.startswith("code/") for n in names):
        out.append(finding(where, "torch.torchscript", Severity.MEDIUM,
                           "TorchScript archive: its code/ runs when loaded with torch.jit.load; review before use"))
    dupes = {n for n, c in Counter(names).items() if c > 1}
    storages = _storage_records(names) if torch_like else frozenset()
    seen: Counter[str] = Counter()
    for entry in entries:
        seen[entry.name] += 1
        label = entry.name if entry.name not in dupes else f"{entry.name}#{seen[entry.name]}"
        out.extend(_scan_entry(f, entry, where.child(label, entry.usize), storage=entry.name in storages))
    return out


def _storage_records(names: list[str]) -> frozenset[str]:
    """The entries a torch checkpoint keeps tensor bytes in: ``<prefix>data/<digits>`` beside
    ``<prefix>data.pkl``. torch reads them raw (``get_storage_from_record``) and never opens one
    as a file of its own, so a zip hidden at the end of one cannot be loaded: they are read only
    for a whole pickle at their start (:func:`_scan_storage_record`), not searched for a zip end
    record (that search reads 64 KiB of every tensor, which was half the time of a checkpoint scan)."""
    prefixes = {m.group(1) for n in names if (m := _DATA_PKL.match(n))}
    return frozenset(n for n in names if (m := _STORAGE_NAME.match(n)) and m.group(1) in prefixes)


# A pickle that could not be read to its end: in a storage record that is tensor bytes that happen
# to start like a pickle, not a pickle
_PARSE_FAILURES = frozenset({"pickle.truncated", "pickle.opcode.unknown", "pickle.malformed"})


def _scan_storage_record(stream: BinaryIO, where: Where) -> tuple[Format, list[Finding]]:
    """A torch storage record holds tensor bytes that torch copies into a tensor and never
    parses, so they are read for one thing only: a whole pickle hidden there (a loader other
    than torch could be pointed at the entry), whose findings are kept, including any from
    before a point where it stops parsing. Bytes that merely start like a pickle (``80 02``
    followed by anything: about one tensor in 10^4 of random weights) and stop parsing are
    tensor data: no finding, where a file or an ordinary entry gets a high one. No other format
    is looked for: a record that starts like gzip or a zip is a tensor too."""
    from gapsync.scanner.formats.pickles import analyse_pickles
    from gapsync.scanner.formats.streams import ByteReader

    result = analyse_pickles(ByteReader(stream), where, known_pickle=False)
    found = [x for x in result.findings.to_list() if x.rule not in _PARSE_FAILURES]
    parsed = result.is_pickle and len(found) == len(result.findings.to_list())
    return (Format.PICKLE if parsed else Format.UNKNOWN), found


# "<prefix>data.pkl" and "<prefix>data/<n>" where the prefix is empty or a directory ("archive/"),
# as torch writes them: "foo/mydata.pkl" does not make "foo/mydata/7" a storage record
_DATA_PKL = re.compile(r"\A((?:.*/)?)data\.pkl\Z", re.DOTALL)
_STORAGE_NAME = re.compile(r"\A((?:.*/)?)data/[0-9]+\Z", re.DOTALL)


def has_zip_tail(f: BinaryIO, size: int) -> bool:
    """Whether the last 64 KiB hold an end-of-central-directory record (zip at the end of a file)."""
    tail_len = min(size, 65535 + 22)
    f.seek(size - tail_len)
    found = EOCD_SIG in f.read(tail_len)
    f.seek(0)
    return found


def read_central_directory(f: BinaryIO, size: int, room: int | None = None) -> list[Entry]:
    """Entries in central-directory order (ZIP64 aware); raises ZipFormatError if unreadable."""
    tail_len = min(size, 65535 + 22)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(EOCD_SIG)
    if pos < 0 or len(tail) - pos < 22:
        raise ZipFormatError("no end-of-central-directory record")
    (_, disk, cd_disk, n_here, n_total, cd_size, cd_offset, _clen) = struct.unpack("<4sHHHHIIH", tail[pos:pos + 22])
    eocd_at = size - tail_len + pos
    loc = pos - 20
    if loc >= 0 and tail[loc:loc + 4] == ZIP64_LOCATOR_SIG:
        # ZIP64 (torch always writes it): the real counts and offsets are in the ZIP64 record,
        # and the central directory ends where that record begins.
        (z64_offset,) = struct.unpack("<Q", tail[loc + 8:loc + 16])
        z64_at = size - tail_len + loc - 56
        f.seek(z64_at)
        rec = f.read(56)
        if rec[:4] != ZIP64_EOCD_SIG or len(rec) < 56:
            f.seek(z64_offset)
            rec = f.read(56)
            z64_at = z64_offset
            if rec[:4] != ZIP64_EOCD_SIG or len(rec) < 56:
                raise ZipFormatError("ZIP64 end-of-central-directory record missing")
        n_total, cd_size, cd_offset = struct.unpack("<QQQ", rec[32:56])
        eocd_at = z64_at
    elif 0xFFFFFFFF in (cd_size, cd_offset) or n_total == 0xFFFF:
        raise ZipFormatError("ZIP64 sizes without a ZIP64 locator")
    if room is not None and n_total > room:  # refused before a record is parsed: memory stays flat
        from gapsync.scanner.budget import BudgetExceeded

        raise BudgetExceeded("entries", f"a zip of {n_total:,} entries, more than the {room:,} left of the "
                                        "container entries budget")
    if n_total > MAX_ENTRIES:
        raise ZipFormatError(f"{n_total} entries (more than {MAX_ENTRIES})")
    # Offsets are relative to where the zip starts; data prepended to a zip (a self-extractor,
    # a polyglot) shifts them. The central directory always ends where its end record begins.
    shift = eocd_at - cd_size - cd_offset
    if shift < 0:
        raise ZipFormatError("central directory extends past its end record")
    f.seek(cd_offset + shift)
    cd = f.read(cd_size)
    entries: list[Entry] = []
    p = 0
    for i in range(n_total):
        if cd[p:p + 4] != CDIR_SIG or p + 46 > len(cd):
            raise ZipFormatError(f"central directory record {i} is damaged")
        (flags, method, crc, csize, usize, nlen, elen, clen, lho) = (
            struct.unpack("<HH", cd[p + 8:p + 12]) + struct.unpack("<III", cd[p + 16:p + 28])
            + struct.unpack("<HHH", cd[p + 28:p + 34]) + struct.unpack("<I", cd[p + 42:p + 46]))
        name = cd[p + 46:p + 46 + nlen].decode("utf-8" if flags & 0x800 else "cp437", "replace")
        extra = cd[p + 46 + nlen:p + 46 + nlen + elen]
        usize, csize, lho = _zip64_extra(extra, usize, csize, lho)
        entries.append(Entry(name, flags, method, crc, csize, usize, lho + shift, i))
        p += 46 + nlen + elen + clen
    return entries


def _zip64_extra(extra: bytes, usize: int, csize: int, lho: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        tag, ln = struct.unpack("<HH", extra[i:i + 4])
        body = extra[i + 4:i + 4 + ln]
        if tag == 0x0001:
            vals = [struct.unpack("<Q", body[j:j + 8])[0] for j in range(0, len(body) - len(body) % 8, 8)]
            it = iter(vals)
            if usize == 0xFFFFFFFF:
                usize = next(it, usize)
            if csize == 0xFFFFFFFF:
                csize = next(it, csize)
            if lho == 0xFFFFFFFF:
                lho = next(it, lho)
        i += 4 + ln
    return usize, csize, lho


def _check_structure(f: BinaryIO, size: int, entries: list[Entry], where: Where) -> list[Finding]:
    out: list[Finding] = []
    for name, count in Counter(e.name for e in entries).items():
        if count > 1:
            out.append(finding(where, "zip.duplicate_name", Severity.MEDIUM,
                               f"{count} entries are named {name!r}: loaders disagree on which one they read; all were scanned",
                               name=name))
    spans: list[tuple[int, int, str]] = []
    for e in entries:
        f.seek(e.header_offset)
        h = f.read(30)
        if len(h) < 30 or h[:4] != LOCAL_SIG:
            out.append(finding(where.child(e.name), "zip.malformed", Severity.MEDIUM,
                               f"no local header at offset {e.header_offset}", e.header_offset))
            continue
        lflags, lmethod = struct.unpack("<HH", h[6:10])
        nlen, elen = struct.unpack("<HH", h[26:30])
        local_name = f.read(nlen).decode("utf-8" if lflags & 0x800 else "cp437", "replace")
        e.local_name = local_name
        e.data_offset = e.header_offset + 30 + nlen + elen
        if local_name != e.name:
            out.append(finding(where.child(e.name), "zip.name_mismatch", Severity.MEDIUM,
                               f"the local header names this entry {local_name!r}, the central directory {e.name!r}: "
                               "tools that read different records see different files", e.header_offset,
                               local_name=local_name, central_name=e.name))
        if lmethod != e.method:
            out.append(finding(where.child(e.name), "zip.method_mismatch", Severity.MEDIUM,
                               f"compression method {lmethod} in the local header, {e.method} in the central directory",
                               e.header_offset))
        odd = e.flags & (FLAG_ENCRYPTED | FLAG_PATCHED | FLAG_STRONG)
        if odd:
            what = ", ".join(n for bit, n in ((FLAG_ENCRYPTED, "encrypted"), (FLAG_PATCHED, "patched data"),
                                              (FLAG_STRONG, "strong encryption")) if odd & bit)
            out.append(finding(where.child(e.name), "zip.entry.encrypted", Severity.MEDIUM,
                               f"entry flagged {what} (flags 0x{e.flags:04x}): its content cannot be scanned if it "
                               "really is encrypted; it was scanned as plain data, which is how loaders that ignore "
                               "the flag read it", e.header_offset, flags=e.flags))
        if e.data_offset + e.csize > size:
            out.append(finding(where.child(e.name), "zip.malformed", Severity.MEDIUM,
                               f"entry data runs past the end of the file ({e.csize} bytes at {e.data_offset})",
                               e.header_offset))
        spans.append((e.header_offset, e.data_offset + e.csize, e.name))
    spans.sort()
    for (_s1, e1, n1), (s2, _e2, n2) in zip(spans, spans[1:], strict=False):
        if s2 < e1:
            out.append(finding(where, "zip.overlapping_entries", Severity.MEDIUM,
                               f"entries {n1!r} and {n2!r} overlap (a zip bomb or a disguise)", s2))
    if spans and spans[0][0] > 0:
        out.extend(_scan_prefix(f, spans[0][0], where))
    return out


def _scan_prefix(f: BinaryIO, length: int, where: Where) -> list[Finding]:
    """Bytes before the first entry: a pickle there is what a pickle loader would read first."""
    from gapsync.scanner.models import scan_stream

    child = where.child("<before-zip>", length)
    fmt, found = scan_stream(Window(f, 0, length), child)
    note = finding(where, "zip.prefix_data", Severity.MEDIUM if fmt is Format.PICKLE else Severity.LOW,
                   f"{length} bytes come before the first zip entry"
                   + (" and they are a pickle (a zip/pickle polyglot)" if fmt is Format.PICKLE else ""), 0)
    return [note, *found]


def open_entry(f: BinaryIO, e: Entry, budget=None) -> BinaryIO | None:
    """A stream of the entry's uncompressed bytes, or None for an unsupported method."""
    assert e.data_offset is not None
    raw = Window(f, e.data_offset, e.csize)
    if e.method == 0:
        return raw  # type: ignore[return-value]
    if e.method == 8:
        return inflate_stream(io.BufferedReader(raw, CHUNK), budget=budget)
    if e.method == 12:
        return bunzip_stream(io.BufferedReader(raw, CHUNK), budget=budget)
    if e.method == 14:  # LZMA as zipfile writes and reads it: version, properties size, properties, raw LZMA1
        head = raw.read(4)
        props = raw.read(struct.unpack("<H", head[2:4])[0]) if len(head) == 4 else b""
        try:
            lz = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
                lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)])  # type: ignore[attr-defined]  # noqa: SLF001 (private, not in typeshed: what zipfile does)
        except (lzma.LZMAError, ValueError) as err:
            raise OSError(f"bad LZMA properties: {err}") from err
        return decompressing(io.BufferedReader(raw, CHUNK), lz, budget)
    if e.method == 93:  # zstd (zipfile in Python 3.14)
        from gapsync.scanner.formats.compressed import zstd_stream

        return zstd_stream(io.BufferedReader(raw, CHUNK), budget)
    return None


def _scan_entry(f: BinaryIO, e: Entry, where: Where, storage: bool = False) -> list[Finding]:
    from gapsync.scanner.models import scan_stream

    if e.data_offset is None:
        return []
    if e.name.endswith("/") and e.usize == 0:
        return []
    if where.budget is not None:
        where.budget.entry()
    try:
        stream = open_entry(f, e, where.budget)
    except OSError as err:
        return [finding(where, "zip.corrupt_entry", Severity.HIGH,
                        f"entry data cannot be decompressed ({err}); it was not scanned", e.header_offset)]
    if stream is None:
        return [finding(where, "zip.unsupported_method", Severity.HIGH,
                        f"compression method {e.method} is not supported by the scanner; the entry was not scanned",
                        e.header_offset, method=e.method)]
    hint = e.name.endswith(".pkl")
    out: list[Finding] = []
    try:
        fmt, found = _scan_storage_record(stream, where) if storage else scan_stream(stream, where, pickle_hint=hint)
    except OSError as err:
        return [finding(where, "zip.corrupt_entry", Severity.HIGH,
                        f"entry data cannot be decompressed ({err}): a loader reads what comes before the damage, "
                        "which could not be scanned the way it reads it", e.header_offset)]
    out.extend(found)
    if fmt is Format.PICKLE and not e.name.lower().endswith(PICKLE_SUFFIXES):
        out.append(finding(where, "zip.entry.disguised_pickle", Severity.MEDIUM,
                           f"entry {e.name!r} holds a pickle but its name does not say so", e.header_offset))
    # CRC only for entries whose content was analysed, and not for containers: tensor data is not
    # read for a checksum, and a zip of zips would have each level read again (a bomb's copies)
    if (fmt not in _NO_CRC and e.usize <= CRC_CHECK_LIMIT and not (e.flags & FLAG_ENCRYPTED)):
        crc = _crc_of(f, e, where.budget)
        if crc is not None and crc != e.crc:
            out.append(finding(where, "zip.crc_mismatch", Severity.MEDIUM,
                               f"CRC-32 is 0x{crc:08x}, the directory says 0x{e.crc:08x}: some tools refuse the "
                               "entry, others (torch) load it; its content was scanned", e.header_offset))
    return out


_NO_CRC = frozenset({Format.UNKNOWN, Format.ZIP, Format.TAR, Format.SEVENZIP}) | COMPRESSED


def _crc_of(f: BinaryIO, e: Entry, budget=None) -> int | None:
    try:
        stream = open_entry(f, e, budget)
    except OSError:
        return None
    if stream is None:
        return None
    crc = 0
    try:
        while chunk := stream.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
            if budget is not None:
                budget.check_time()
    except OSError:
        return None
    return crc
