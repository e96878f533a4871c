"""Parity volumes: N extra files that let the air-gapped side rebuild any N lost or damaged
volumes of a bundle (``gapsync bundle repair``), so one bad sector or one forgotten file on a
stick does not cost a trip back across the gap.

Reed-Solomon over GF(2^8) by ``zfec`` (the erasure code of Tahoe-LAFS): k data volumes plus N
parity files make m = k + N pieces, any k of which give back the k data volumes. The data
volumes are striped: each is padded (virtually, with zeros) to the size of the largest, cut into
blocks of ``stripe`` bytes at the same offsets, and for each offset the k blocks are encoded into
N parity blocks, appended to the N parity files. Everything streams: one stripe of every piece is
in memory at a time, never a whole volume.

Each parity file starts with a JSON header (magic, format, k, m, its index, the stripe size, and
for every data volume its name, size and sha256, plus every parity file's payload sha256), so
repair can tell which pieces are missing or damaged by size and hash before it reads a stripe,
and can refuse parity made for another bundle.

The header is not a trust anchor: its ``check`` is an unkeyed sha256 that anyone holding the
medium can recompute, so a forged header could describe any bytes. A rebuilt volume therefore
gets its final name only after ``check_rebuilt_volume`` has read it as a bundle (the reader's
canonical form) and found that it carries exactly the metadata the surviving volumes carry (TUF
signed: every blob's length and sha256 are in the signed targets) and that every blob member is
a signed target whose bytes match its sha256. Otherwise nothing is renamed and repair exits 3.
The importer then verifies the volume with TUF like any other. See docs/bundle-format.md.

Files are written through ``fsutil`` (``<name>.partial`` created O_EXCL|O_NOFOLLOW in the
output directory opened once, renamed into place); a link or special file at any name repair or
parity would write (the file, its ``.partial``, a volume's ``.minisig``) is refused before a byte
is written, and every file read (volumes, parity files, ``.minisig``) is opened with
``fsutil.open_regular``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import zfec

from gapsync import fsutil
from gapsync.bundle.archive import SUFFIX, BlobMember, BundleReader, SignedPart, bundle_format, parse_parts
from gapsync.bundle.records import BundleInfoTarget
from gapsync.bundle.volumes import VOLUME_RE
from gapsync.canonical import canonical_json
from gapsync.errors import BundleFormatError, GapsyncError, InputError, VerificationError
from gapsync.hashing import CHUNK

MAGIC = "gapsync-parity"
FORMAT = 1
CODEC = "zfec"
PARITY_SUFFIX = ".gapsync-parity"
PARITY_RE = re.compile(r"(?P<stem>.+)\.p(?P<index>[0-9]{2,})of(?P<count>[0-9]{2,})" + re.escape(PARITY_SUFFIX))  # fullmatch
DEFAULT_STRIPE = 1 << 20
STRIPE_MEMORY = 64 << 20  # at most this much of stripes in memory (all m pieces)
MIN_STRIPE, MAX_STRIPE = 512, 64 << 20
HEADER_ALIGN = 4096  # the payload starts on a 4 KiB boundary
MAX_HEADER = 4 << 20
MAX_PIECES = 256  # GF(2^8): zfec's limit on m
MAX_MINISIG = 4096
MAX_VOLUME = 1 << 50
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,250}")  # fullmatch only
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PLACEHOLDER = "0" * 64


def parity_file_name(stem: str, index: int, count: int) -> str:
    return f"{stem}.p{index:02d}of{count:02d}{PARITY_SUFFIX}"


# -- the header -----------------------------------------------------------------------------

@dataclass(frozen=True)
class VolumeRecord:
    name: str
    size: int
    sha256: str
    minisig: str | None = None  # the volume's .minisig text, so repair can restore it too

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "minisig": self.minisig}


@dataclass(frozen=True)
class ParityHeader:
    """What every parity file of a set says, identical but for ``index``."""

    bundle: str
    k: int
    m: int
    index: int  # 1..N, as in the file name; the zfec block number is k + index - 1
    stripe: int
    volumes: tuple[VolumeRecord, ...]
    parity: tuple[tuple[str, str], ...]  # (file name, sha256 of its payload) for index 1..N

    @property
    def n(self) -> int:
        return self.m - self.k

    @property
    def payload(self) -> int:
        """Bytes after the header in every parity file: the largest data volume's size."""
        return max(v.size for v in self.volumes)

    @property
    def blocknum(self) -> int:
        return self.k + self.index - 1

    def with_index(self, index: int) -> ParityHeader:
        return ParityHeader(self.bundle, self.k, self.m, index, self.stripe, self.volumes, self.parity)

    def set_key(self) -> tuple[object, ...]:
        """Equal for every parity file of one set, different for any other set."""
        return (self.bundle, self.k, self.m, self.stripe, self.volumes, self.parity)

    def _dict(self) -> dict[str, Any]:
        return {"magic": MAGIC, "format": FORMAT, "codec": CODEC, "bundle": self.bundle, "k": self.k, "m": self.m,
                "index": self.index, "stripe": self.stripe, "payload": self.payload,
                "volumes": [v.to_dict() for v in self.volumes],
                "parity": [{"name": n, "sha256": h} for n, h in self.parity]}

    def to_bytes(self) -> bytes:
        """The JSON (its ``check`` a sha256 of the rest, so a damaged header is told apart from
        another bundle's), space-padded so the payload starts on a 4 KiB boundary, then ``\\n``."""
        d = self._dict()
        d["check"] = _check(d)
        text = json.dumps(d).encode()
        total = -(-(len(text) + 1) // HEADER_ALIGN) * HEADER_ALIGN
        return text + b" " * (total - len(text) - 1) + b"\n"

    @classmethod
    def parse(cls, raw: bytes, where: str) -> tuple[ParityHeader, int]:
        """Parse and validate a header read from an untrusted medium; returns it and its length."""
        nl = raw.find(b"\n")
        if not raw.startswith(b"{") or nl == -1:
            raise VerificationError(f"{where}: not a gapsync parity file (no header)")
        if (nl + 1) % HEADER_ALIGN:
            raise VerificationError(f"{where}: damaged parity header (length {nl + 1})")
        try:
            d = json.loads(raw[:nl])
        except (UnicodeError, ValueError) as e:
            raise VerificationError(f"{where}: damaged parity header ({e})") from e
        if not isinstance(d, dict) or d.get("magic") != MAGIC:
            raise VerificationError(f"{where}: not a gapsync parity file")
        if d.get("format") != FORMAT or d.get("codec") != CODEC:
            raise VerificationError(f"{where}: parity format {d.get('format')!r} ({d.get('codec')!r}) is not "
                                    f"{FORMAT} ({CODEC}): upgrade gapsync")
        check = d.pop("check", None)
        if check != _check(d):
            raise VerificationError(f"{where}: damaged parity header (its check does not match)")
        try:
            h = cls._from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise VerificationError(f"{where}: invalid parity header ({e})") from e
        return h, nl + 1

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> ParityHeader:
        def integer(v: object, lo: int, hi: int, what: str) -> int:
            if type(v) is not int or not lo <= v <= hi:
                raise ValueError(f"{what} {v!r} out of range")
            return v

        def name(v: object, suffix: str) -> str:
            if not isinstance(v, str) or not _SAFE_NAME.fullmatch(v) or not v.endswith(suffix):
                raise ValueError(f"unsafe or unexpected file name {v!r}")
            return v

        def hexdigest(v: object) -> str:
            if not isinstance(v, str) or not _HEX64.fullmatch(v):
                raise ValueError(f"bad sha256 {v!r}")
            return v

        k = integer(d["k"], 1, MAX_PIECES - 1, "k")
        m = integer(d["m"], k + 1, MAX_PIECES, "m")
        vols = []
        for v in d["volumes"]:
            sig = v.get("minisig")
            if sig is not None and (not isinstance(sig, str) or len(sig) > MAX_MINISIG):
                raise ValueError("bad minisig")
            vols.append(VolumeRecord(name(v["name"], SUFFIX), integer(v["size"], 0, MAX_VOLUME, "size"),
                                     hexdigest(v["sha256"]), sig))
        parity = tuple((name(p["name"], PARITY_SUFFIX), hexdigest(p["sha256"])) for p in d["parity"])
        if len(vols) != k or len(parity) != m - k:
            raise ValueError(f"{len(vols)} volumes and {len(parity)} parity files for k={k}, m={m}")
        names = [v.name for v in vols] + [p[0] for p in parity]
        if len(set(names)) != len(names):
            raise ValueError("a file name appears twice")
        bundle = d["bundle"]
        if not isinstance(bundle, str) or not _SAFE_NAME.fullmatch(bundle):
            raise ValueError(f"bad bundle name {bundle!r}")
        h = cls(bundle, k, m, integer(d["index"], 1, m - k, "index"),
                integer(d["stripe"], MIN_STRIPE, MAX_STRIPE, "stripe"), tuple(vols), parity)
        if d["payload"] != h.payload:
            raise ValueError(f"payload {d['payload']!r} is not the largest volume's size {h.payload}")
        return h


def _check(d: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(d)).hexdigest()


def read_header(path: Path) -> tuple[ParityHeader, int]:
    try:
        with fsutil.open_regular(path) as f:
            raw = f.read(HEADER_ALIGN)
            while raw and b"\n" not in raw and len(raw) < MAX_HEADER:
                more = f.read(HEADER_ALIGN)
                if not more:
                    break
                raw += more
    except OSError as e:
        raise VerificationError(f"{path}: cannot read ({e.strerror or e})") from e
    return ParityHeader.parse(raw, str(path))


# -- writing --------------------------------------------------------------------------------

def _stem_of(volumes: list[Path]) -> str:
    """The bundle's stem from its volume names, which must be the whole set, in order."""
    if len(volumes) == 1 and volumes[0].name.endswith(SUFFIX) and not VOLUME_RE.fullmatch(volumes[0].name):
        stem = volumes[0].name.removesuffix(SUFFIX)
    else:
        matches = [VOLUME_RE.fullmatch(p.name) for p in volumes]
        if not all(matches):
            bad = next(p.name for p, m in zip(volumes, matches, strict=True) if not m)
            raise InputError(f"{bad}: not a volume name (<stem>.vNNofMM{SUFFIX})")
        first = matches[0]
        assert first is not None  # all(matches) above
        stem = first.group("stem")
        for i, (p, m) in enumerate(zip(volumes, matches, strict=True), 1):
            assert m is not None
            if m.group("stem") != stem or int(m.group("index")) != i or int(m.group("count")) != len(volumes):
                raise InputError(f"{p.name}: expected volume {i} of {len(volumes)} of {stem}: give every volume "
                                 "of one bundle, in order")
    if not _SAFE_NAME.fullmatch(stem):
        raise InputError(f"{stem}: the bundle name has characters a parity header does not allow")
    return stem


def check_parity_names(out_dir: Path, stem: str, n: int) -> None:
    """Refuse (fsutil.UnsafeFileError) before anything of a bundle is written when a name its
    ``n`` parity files would take, or their ``.partial``, is a link or special file."""
    if not out_dir.is_dir():
        return
    with fsutil.Dir(out_dir, create=False) as d:
        for j in range(1, n + 1):
            name = parity_file_name(stem, j, n)
            d.check_replaceable(name)
            d.check_replaceable(name + ".partial")


def _auto_stripe(m: int) -> int:
    return max(MIN_STRIPE * 8, min(DEFAULT_STRIPE, STRIPE_MEMORY // m // HEADER_ALIGN * HEADER_ALIGN))


def _read_block(f: BinaryIO, length: int) -> bytes:
    """``length`` bytes from the current position, zero-padded past the end of the file (the
    virtual padding of a volume shorter than the largest)."""
    data = f.read(length)
    while len(data) < length:
        more = f.read(length - len(data))
        if not more:
            return data + bytes(length - len(data))
        data += more
    return data


def write_parity(volumes: list[Path], n: int, out_dir: Path, *, stripe_size: int | None = None) -> list[Path]:
    """Write ``n`` parity files for the data ``volumes`` (every volume of one bundle, in order)
    into ``out_dir``; returns their paths, index 1..n.

    One pass over the data: each stripe is read once from every volume, hashed (for the header's
    sha256) and encoded. The headers are written first with placeholder hashes of the same length
    and rewritten at the end, so no second pass and no copy. Each parity file appears under its
    name only when complete (``.partial`` then rename); existing files are not overwritten. A
    ``<volume>.minisig`` next to a volume is recorded so repair restores it with the volume.
    """
    if not volumes:
        raise InputError("parity: no volume given")
    k = len(volumes)
    if n < 1 or k + n > MAX_PIECES:
        raise InputError(f"parity: {n} parity files for {k} volumes: need 1 <= N and volumes + N <= {MAX_PIECES}")
    stem = _stem_of(volumes)
    m = k + n
    stripe = stripe_size or _auto_stripe(m)
    if not MIN_STRIPE <= stripe <= MAX_STRIPE:
        raise InputError(f"parity: stripe size {stripe} out of range {MIN_STRIPE}..{MAX_STRIPE}")
    sizes = [p.stat().st_size for p in volumes]
    sigs = [_read_minisig(p) for p in volumes]
    names = [parity_file_name(stem, j, n) for j in range(1, n + 1)]
    paths = [out_dir / nm for nm in names]
    for p in paths:
        if p.exists():
            raise InputError(f"{p}: already exists")

    def header(vol_hashes: list[str], par_hashes: list[str], index: int) -> ParityHeader:
        return ParityHeader(stem, k, m, index, stripe,
                            tuple(VolumeRecord(p.name, s, h, sig) for p, s, h, sig in zip(volumes, sizes, vol_hashes, sigs, strict=True)),
                            tuple(zip(names, par_hashes, strict=True)))

    placeholder = [header([_PLACEHOLDER] * k, [_PLACEHOLDER] * n, j).to_bytes() for j in range(1, n + 1)]
    payload = max(sizes)
    ins: list[BinaryIO] = []
    outs: list[fsutil.AtomicFile] = []
    out = fsutil.Dir(out_dir)
    try:
        for p in paths:  # every name refused before a byte is written if it is a link or special file
            out.check_replaceable(p.name)
            out.check_replaceable(p.name + ".partial")
        ins = [fsutil.open_regular(p) for p in volumes]
        for p in paths:
            outs.append(out.atomic(p.name, temp=p.name + ".partial"))
        for o, h in zip(outs, placeholder, strict=True):
            o.write(h)
        vol_h = [hashlib.sha256() for _ in volumes]
        par_h = [hashlib.sha256() for _ in paths]
        read = [0] * k
        enc = zfec.Encoder(k, m)
        wanted = tuple(range(k, m))
        for off in range(0, payload, stripe):
            length = min(stripe, payload - off)
            blocks = []
            for i, f in enumerate(ins):
                real = max(0, min(length, sizes[i] - off))
                data = f.read(real) if real else b""
                if len(data) != real:
                    raise GapsyncError(f"{volumes[i]}: changed while the parity was written (shorter than {sizes[i]})")
                vol_h[i].update(data)
                read[i] += real
                blocks.append(data + bytes(length - real) if real < length else data)
            for j, block in enumerate(enc.encode(tuple(blocks), wanted)):
                outs[j].write(block)
                par_h[j].update(block)
        for i, f in enumerate(ins):
            if f.read(1):
                raise GapsyncError(f"{volumes[i]}: changed while the parity was written (longer than {sizes[i]})")
        vol_hashes = [h.hexdigest() for h in vol_h]
        par_hashes = [h.hexdigest() for h in par_h]
        for j, o in enumerate(outs, 1):
            final = header(vol_hashes, par_hashes, j).to_bytes()
            assert len(final) == len(placeholder[j - 1])
            o.file.seek(0)
            o.write(final)
        for o in outs:
            o.commit()
    except OSError as e:
        _discard(outs)
        raise GapsyncError(f"{out_dir}: cannot write the parity files ({e.strerror or e})") from e
    except BaseException:
        _discard(outs)
        raise
    finally:
        for f in ins:
            f.close()
        out.close()
    return paths


def _read_minisig(volume: Path) -> str | None:
    sig = volume.with_name(volume.name + ".minisig")
    try:
        return fsutil.read_regular(sig, MAX_MINISIG).decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError, VerificationError):  # too large or not text: not recorded
        return None


def _discard(files: list[fsutil.AtomicFile]) -> None:
    for f in files:
        f.abort()


# -- checking -------------------------------------------------------------------------------

@dataclass
class PieceStatus:
    """One data volume or parity file of the set: ``ok``, ``missing`` or ``damaged`` (why in
    ``reason``); ``path`` is the usable copy (ok) or the damaged one."""

    name: str
    kind: str  # "volume" or "parity"
    blocknum: int
    status: str = "missing"
    reason: str = ""
    path: Path | None = None
    offset: int = 0  # where the piece's payload starts in the file (a parity file's header length)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "status": self.status, "reason": self.reason,
                "path": str(self.path) if self.path else None}


@dataclass
class ParityScan:
    header: ParityHeader
    volumes: list[PieceStatus]
    parity: list[PieceStatus]
    ignored: list[str] = field(default_factory=list)  # files given that are not part of this set

    @property
    def lost(self) -> list[PieceStatus]:
        return [p for p in self.volumes + self.parity if p.status != "ok"]

    @property
    def repairable(self) -> bool:
        return len(self.lost) <= self.header.n

    def to_dict(self) -> dict[str, Any]:
        h = self.header
        return {"bundle": h.bundle, "volumes": h.k, "parity_files": h.n, "stripe": h.stripe,
                "pieces": [p.to_dict() for p in self.volumes + self.parity],
                "lost": [p.name for p in self.lost], "repairable": self.repairable, "ignored": self.ignored}


def _expand(paths: list[Path] | Path) -> tuple[list[Path], list[Path]]:
    """(files given or found, directories to look in for volumes the parity headers name)."""
    items = [paths] if isinstance(paths, Path | str) else list(paths)
    files: list[Path] = []
    dirs: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            dirs.append(item)
            # names that are links or special files are listed too: reading them is refused
            # (fsutil.open_regular), and a volume must never be "missing" because it is a link
            files += sorted(p for p in item.iterdir() if p.name.endswith((SUFFIX, PARITY_SUFFIX)))
        elif os.path.lexists(item):
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or directory")
    for f in files:
        if f.name.endswith(PARITY_SUFFIX) and f.parent not in dirs:
            dirs.append(f.parent)
    return files, dirs


def scan_set(paths: list[Path] | Path) -> ParityScan:
    """Find the parity set among ``paths`` (a directory, or files: parity files and volumes; the
    volumes are also looked for next to the parity files) and check every piece: a data volume
    by size then sha256, a parity file by header then payload sha256. Refuses parity files of
    two different sets (VerificationError)."""
    files, dirs = _expand(paths)
    parity_files = [f for f in files if f.name.endswith(PARITY_SUFFIX)]
    if not parity_files:
        given = ", ".join(str(p) for p in ([paths] if isinstance(paths, Path | str) else paths))
        raise InputError(f"no parity file (*{PARITY_SUFFIX}) in {given}: nothing to repair from")
    headers: list[tuple[Path, ParityHeader, int]] = []
    damaged: list[tuple[Path, str]] = []
    for f in parity_files:
        try:
            h, hlen = read_header(f)
        except VerificationError as e:
            damaged.append((f, str(e)))
            continue
        headers.append((f, h, hlen))
    if not headers:
        raise VerificationError("no usable parity file: " + "; ".join(reason for _, reason in damaged))
    ref_path, ref, _ = headers[0]
    for f, h, _ in headers[1:]:
        if h.set_key() != ref.set_key():
            raise VerificationError(
                f"{f.name} and {ref_path.name} are parity of different bundles ({h.bundle}: "
                f"{', '.join(v.name for v in h.volumes[:3])}…; {ref.bundle}: {', '.join(v.name for v in ref.volumes[:3])}…): "
                "give the files of one bundle only")
    volumes = [PieceStatus(v.name, "volume", i) for i, v in enumerate(ref.volumes)]
    parity = [PieceStatus(name, "parity", ref.k + j) for j, (name, _) in enumerate(ref.parity)]
    for p in parity:  # a damaged header: counted as a damaged copy of the parity file its name says
        for f, reason in damaged:
            if f.name == p.name:
                p.status, p.reason, p.path = "damaged", reason, f
    by_index: dict[int, list[tuple[Path, int]]] = {}
    for f, h, hlen in headers:
        by_index.setdefault(h.index, []).append((f, hlen))
    for j, p in enumerate(parity, 1):
        for f, hlen in by_index.get(j, []):
            reason = _check_file(f, hlen, ref.payload, ref.parity[j - 1][1])
            p.path, p.offset = f, hlen
            if not reason:
                p.status, p.reason = "ok", ""
                break
            p.status, p.reason = "damaged", reason
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    for rec, v in zip(ref.volumes, volumes, strict=True):
        candidates = by_name.get(rec.name, []) + [d / rec.name for d in dirs if os.path.lexists(d / rec.name)]
        seen: set[Path] = set()
        for c in candidates:
            if c.absolute() in seen:
                continue
            seen.add(c.absolute())
            reason = _check_file(c, 0, rec.size, rec.sha256)
            v.path = c
            if not reason:
                v.status, v.reason = "ok", ""
                break
            v.status, v.reason = "damaged", reason
    known = {v.name for v in volumes} | {p.name for p in parity}
    ignored = sorted({f.name for f in files if f.name not in known and not f.name.endswith(".partial")})
    return ParityScan(ref, volumes, parity, ignored)


def _check_file(path: Path, offset: int, size: int, sha256: str) -> str:
    """"" when the bytes from ``offset`` on are ``size`` bytes with this sha256, else why not."""
    try:
        with fsutil.open_regular(path) as f:  # a link or FIFO on the medium: UnsafeFileError, exit 3
            actual = os.fstat(f.fileno()).st_size - offset
            if actual != size:
                return f"{actual} bytes, expected {size}"
            h = hashlib.sha256()
            f.seek(offset)
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if h.hexdigest() != sha256:
        return "sha256 does not match"
    return ""


# -- repairing ------------------------------------------------------------------------------

def repair(paths: list[Path] | Path, out_dir: Path | None = None, *, scan: ParityScan | None = None,
           verify: Callable[[dict[str, bytes], Path], None] | None = None) -> list[Path]:
    """Rebuild every lost or damaged volume (and parity file) of the set found in ``paths``
    into ``out_dir`` (default: the directory of the first usable parity file); returns the
    rebuilt files, [] when nothing was lost.

    Any k good pieces suffice, read stripe by stripe (good data volumes first: zfec decodes
    those for free). Each rebuilt file is hashed as it is written and must match the recorded
    sha256 before it is renamed into place, replacing a damaged copy of the same name. A volume's
    recorded ``.minisig`` is restored if it is missing. More than N lost pieces: VerificationError,
    nothing written.

    ``verify(metadata, volume)``: a TUF check of the volumes' metadata against the channel's
    pinned trust (``bundle repair --mirror``), run on the surviving volumes' metadata before a
    byte is written, or on the rebuilt one's before it is renamed when none survived.
    """
    scan = scan or scan_set(paths)
    h = scan.header
    lost = scan.lost
    if not lost:
        return []
    good = [p for p in scan.volumes + scan.parity if p.status == "ok"]
    if len(good) < h.k:
        lost_data = [p for p in lost if p.kind == "volume"]
        hint = ""
        if len(lost_data) == h.k:
            hint = (f"; none of the volumes these parity files describe ({h.volumes[0].name}…) is here intact"
                    + (f" (other bundle files here: {', '.join(scan.ignored[:3])})" if scan.ignored else "")
                    + ": the parity may belong to another bundle")
        raise VerificationError(
            f"{h.bundle}: cannot repair: {len(lost)} of the {h.m} pieces are lost or damaged "
            f"({', '.join(f'{p.name} {p.status}' for p in lost)}) and {h.n} parity file(s) rebuild at most {h.n}{hint}")
    if out_dir is None:
        out_dir = next(p.path for p in scan.parity if p.status == "ok" and p.path is not None).parent
    pieces = good[:h.k]
    lost_vols = [p for p in lost if p.kind == "volume"]
    lost_par = [p for p in lost if p.kind == "parity"]
    names = [p.name for p in lost_vols + lost_par]
    targets = [out_dir / n for n in names]
    reference = _reference_metadata(scan)  # before a byte is written: refuses volumes that disagree
    verified = False
    if verify is not None and reference.metadata is not None:
        verify(reference.metadata, next(v.path for v in scan.volumes if v.status == "ok" and v.path is not None))
        verified = True
    ins: list[BinaryIO] = []
    outs: list[fsutil.AtomicFile] = []
    out = fsutil.Dir(out_dir)
    try:
        # a link or special file at any name repair writes is refused before a byte is written
        for n in names:
            out.check_replaceable(n)
            out.check_replaceable(n + ".partial")
        for p in lost_vols:
            if h.volumes[p.blocknum].minisig is not None:
                out.check_replaceable(p.name + ".minisig")
        for p in pieces:
            assert p.path is not None  # a good piece is one the scan found and checked
            f = fsutil.open_regular(p.path)
            ins.append(f)
            f.seek(p.offset)
        for n in names:
            outs.append(out.atomic(n, temp=n + ".partial"))
        hashes = [hashlib.sha256() for _ in targets]
        sizes = [h.volumes[p.blocknum].size for p in lost_vols]
        for j, p in enumerate(lost_par):
            outs[len(lost_vols) + j].write(h.with_index(p.blocknum - h.k + 1).to_bytes())
        dec = zfec.Decoder(h.k, h.m)
        enc = zfec.Encoder(h.k, h.m)
        nums = tuple(p.blocknum for p in pieces)
        par_nums = tuple(p.blocknum for p in lost_par)
        for off in range(0, h.payload, h.stripe):
            length = min(h.stripe, h.payload - off)
            blocks = tuple(_read_block(f, length) for f in ins)
            primary = dec.decode(blocks, nums)
            for j, p in enumerate(lost_vols):
                keep = max(0, min(length, sizes[j] - off))
                if keep:
                    data = primary[p.blocknum][:keep]
                    outs[j].write(data)
                    hashes[j].update(data)
            if par_nums:
                for j, block in enumerate(enc.encode(tuple(primary), par_nums), len(lost_vols)):
                    outs[j].write(block)
                    hashes[j].update(block)
        expected = [h.volumes[p.blocknum].sha256 for p in lost_vols] + [h.parity[p.blocknum - h.k][1] for p in lost_par]
        for t, hh, want in zip(targets, hashes, expected, strict=True):
            if hh.hexdigest() != want:
                raise VerificationError(f"{t.name}: the rebuilt file does not match its recorded sha256 "
                                        "(a piece used for the rebuild is damaged); nothing was replaced")
        for o in outs:
            o.file.flush()
        # the header's sha256 is unkeyed: the rebuilt volumes must also be what the signed
        # metadata says, before any of them gets its name
        for o in outs[:len(lost_vols)]:
            with out.open_regular(o.temp) as rf:
                reference = check_rebuilt_volume(out_dir / o.name, rf, reference)
        if verify is not None and not verified and lost_vols and reference.metadata is not None:
            verify(reference.metadata, out_dir / lost_vols[0].name)
        for o in outs:
            o.commit()
        for p in lost_vols:
            sig = h.volumes[p.blocknum].minisig
            if sig is not None and out.lstat(p.name + ".minisig") is None:
                out.write_atomic(p.name + ".minisig", sig.encode("utf-8"))
        out.fsync()
    except OSError as e:
        _discard(outs)
        raise GapsyncError(f"{out_dir}: cannot write the rebuilt files ({e.strerror or e})") from e
    except BaseException:
        _discard(outs)
        raise
    finally:
        for f in ins:
            f.close()
        out.close()
    return targets


# -- checking a rebuilt volume against the signed metadata ---------------------------------

def _check_rebuilt_part(where: Path, r: BundleReader, m: BlobMember, parts: dict[str, list[SignedPart]], reference: _Reference) -> None:
    """A part member of a rebuilt volume: listed in the signed parts table with this length,
    in this volume (its number from the name it is to get), not carried by another volume, and
    its bytes match the part's signed sha256."""
    plist = parts.get(m.digest) or []
    if not m.part or m.part > len(plist) or plist[m.part - 1].length != m.size:
        raise VerificationError(f"{where}: the rebuilt volume carries {m.name} of {m.size} bytes, which the signed "
                                "parts table does not list with that length; nothing was rebuilt")
    sp = plist[m.part - 1]
    vm = VOLUME_RE.fullmatch(where.name)
    if vm and int(vm.group("index")) != sp.volume:
        raise VerificationError(f"{where}: the rebuilt volume carries {m.name}, which the signed parts table puts "
                                f"in volume {sp.volume}; nothing was rebuilt")
    other = reference.carried.get(m.name)
    if other is not None:
        raise VerificationError(f"{where}: the rebuilt volume carries {m.name}, which {other} carries already; "
                                "nothing was rebuilt")
    reference.carried[m.name] = where.name
    h = hashlib.sha256()
    for chunk in r.chunks(m):
        h.update(chunk)
    if h.hexdigest() != sp.sha256:
        raise VerificationError(f"{where}: the rebuilt volume's {m.name} does not match its signed sha256; "
                                "nothing was rebuilt")


@dataclass
class _Reference:
    """What the intact data volumes say: their (identical) metadata members, and which volume
    carries which blob (each blob is in one volume, bar those every volume carries)."""

    metadata: dict[str, bytes] | None = None
    carried: dict[str, str] = field(default_factory=dict)  # blob digest (or part member name) -> volume name


def _reference_metadata(scan: ParityScan) -> _Reference:
    """The metadata members the intact data volumes carry (every volume of a bundle carries the
    same signed metadata; None when no data volume survived) and their blobs. Volumes that
    disagree are refused: the medium holds volumes of different bundles, or forged ones."""
    ref = _Reference()
    ref_name = ""
    for v in scan.volumes:
        if v.status != "ok" or v.path is None:
            continue
        with BundleReader(v.path) as r:
            members = r.read_metadata()
            for m in r.iter_blobs():
                ref.carried.setdefault(m.name if m.part else m.digest, v.name)
        if ref.metadata is None:
            ref.metadata, ref_name = members, v.name
        elif members != ref.metadata:
            raise VerificationError(f"{v.path}: carries other metadata than {ref_name}: these are not volumes of "
                                    "one bundle; nothing was rebuilt")
    return ref


def _signed_blobs(members: dict[str, bytes], where: Path) -> tuple[dict[str, int], set[str], dict[str, list[SignedPart]]]:
    """sha256 -> length of every target in the (signed) targets metadata, the digests of the
    targets every volume carries (``bundle-info``: bundle.json), and (format 2) the parts of the
    blobs that span volumes, validated as the importer validates them."""
    info = BundleInfoTarget()
    try:
        signed = json.loads(members["targets.json"])["signed"]
        fmt = bundle_format(signed, str(where))
        targets = signed["targets"]
        out: dict[str, int] = {}
        shared: set[str] = set()
        for t in targets.values():
            digest, length = t["hashes"]["sha256"], t["length"]
            if not isinstance(digest, str) or type(length) is not int:
                raise TypeError("a target without a sha256 and a length")
            out[digest] = length
            if isinstance(t.get("custom"), dict) and t["custom"].get("kind") == "bundle-info":
                shared.add(digest)
                info = BundleInfoTarget.from_dict(t["custom"], f"{where}: bundle.json")
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise VerificationError(f"{where}: its metadata/targets.json does not list targets with length and "
                                f"sha256 ({type(e).__name__}); nothing was rebuilt") from e
    parts = parse_parts(info.parts, out, info.volumes, str(where)) if fmt >= 2 else {}
    return out, shared, parts


def check_rebuilt_volume(where: Path, f: BinaryIO, reference: _Reference) -> _Reference:
    """Check the rebuilt volume open as ``f`` (still under its temporary name; ``where`` is the
    name it is to get) before it is renamed: it is a bundle in the canonical form, its metadata is
    byte for byte the reference (the surviving volumes' signed metadata; when none survived, the
    first rebuilt volume's, which the importer verifies with TUF), every blob member is a target
    of that metadata with the signed length and sha256, and none is a blob another volume carries
    (a real volume under another volume's name). Returns the reference for the next rebuilt
    volume. VerificationError (exit 3), nothing renamed, otherwise."""
    try:
        return _check_rebuilt(where, f, reference)
    except BundleFormatError as e:  # the reader's own refusal: the bytes are not a bundle gapsync wrote
        raise VerificationError(f"{e} (the rebuilt volume is not a well-formed bundle: nothing was rebuilt)") from e


def _check_rebuilt(where: Path, f: BinaryIO, reference: _Reference) -> _Reference:
    with BundleReader(where, fileobj=f) as r:
        members = r.read_metadata()
        if reference.metadata is not None and members != reference.metadata:
            raise VerificationError(f"{where}: the rebuilt volume does not carry the signed metadata of the surviving "
                                    "volumes (a forged or foreign parity file?); nothing was rebuilt")
        reference.metadata = members
        signed, shared, parts = _signed_blobs(members, where)
        for m in r.iter_blobs():
            if m.part or m.digest in parts:
                _check_rebuilt_part(where, r, m, parts, reference)
                continue
            if signed.get(m.digest) != m.size:
                raise VerificationError(f"{where}: the rebuilt volume carries blob {m.digest[:16]}… of {m.size} bytes, "
                                        "which the signed targets do not list with that length; nothing was rebuilt")
            other = reference.carried.get(m.digest)
            if other is not None and m.digest not in shared:
                raise VerificationError(f"{where}: the rebuilt volume carries blob {m.digest[:16]}…, which {other} "
                                        "carries already (another volume under this name?); nothing was rebuilt")
            reference.carried[m.digest] = where.name
            h = hashlib.sha256()
            for chunk in r.chunks(m):
                h.update(chunk)
            if h.hexdigest() != m.digest:
                raise VerificationError(f"{where}: the rebuilt volume's blob {m.digest[:16]}… does not match its signed "
                                        "sha256; nothing was rebuilt")
    return reference
