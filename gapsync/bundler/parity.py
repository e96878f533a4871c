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
and can refuse parity made for another bundle. The header is not a trust anchor: a rebuilt
volume is an ordinary volume that the importer verifies with TUF like any other; the hashes only
decide which pieces are usable and check the rebuild. See docs/bundle-format.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zfec

from gapsync.bundler.bundle import SUFFIX
from gapsync.bundler.volumes import VOLUME_RE
from gapsync.errors import GapsyncError, InputError, VerificationError
from gapsync.hashing import CHUNK, fsync_dir

MAGIC = "gapsync-parity"
FORMAT = 1
CODEC = "zfec"
PARITY_SUFFIX = ".gapsync-parity"
PARITY_RE = re.compile(r"^(?P<stem>.+)\.p(?P<index>[0-9]{2,})of(?P<count>[0-9]{2,})" + re.escape(PARITY_SUFFIX) + "$")
DEFAULT_STRIPE = 1 << 20
STRIPE_MEMORY = 64 << 20  # at most this much of stripes in memory (all m pieces)
MIN_STRIPE, MAX_STRIPE = 512, 64 << 20
HEADER_ALIGN = 4096  # the payload starts on a 4 KiB boundary
MAX_HEADER = 4 << 20
MAX_PIECES = 256  # GF(2^8): zfec's limit on m
MAX_MINISIG = 4096
MAX_VOLUME = 1 << 50
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,250}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
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

    def to_dict(self) -> dict:
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

    def set_key(self) -> tuple:
        """Equal for every parity file of one set, different for any other set."""
        return (self.bundle, self.k, self.m, self.stripe, self.volumes, self.parity)

    def _dict(self) -> dict:
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
    def _from_dict(cls, d: dict) -> ParityHeader:
        def integer(v, lo: int, hi: int, what: str) -> int:
            if type(v) is not int or not lo <= v <= hi:
                raise ValueError(f"{what} {v!r} out of range")
            return v

        def name(v, suffix: str) -> str:
            if not isinstance(v, str) or not _SAFE_NAME.match(v) or not v.endswith(suffix):
                raise ValueError(f"unsafe or unexpected file name {v!r}")
            return v

        def hexdigest(v) -> str:
            if not isinstance(v, str) or not _HEX64.match(v):
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
        if not isinstance(bundle, str) or not _SAFE_NAME.match(bundle):
            raise ValueError(f"bad bundle name {bundle!r}")
        h = cls(bundle, k, m, integer(d["index"], 1, m - k, "index"),
                integer(d["stripe"], MIN_STRIPE, MAX_STRIPE, "stripe"), tuple(vols), parity)
        if d["payload"] != h.payload:
            raise ValueError(f"payload {d['payload']!r} is not the largest volume's size {h.payload}")
        return h


def _check(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_header(path: Path) -> tuple[ParityHeader, int]:
    try:
        with path.open("rb") as f:
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
    if len(volumes) == 1 and volumes[0].name.endswith(SUFFIX) and not VOLUME_RE.match(volumes[0].name):
        stem = volumes[0].name.removesuffix(SUFFIX)
    else:
        matches = [VOLUME_RE.match(p.name) for p in volumes]
        if not all(matches):
            bad = next(p.name for p, m in zip(volumes, matches, strict=True) if not m)
            raise InputError(f"{bad}: not a volume name (<stem>.vNNofMM{SUFFIX})")
        stem = matches[0].group("stem")  # type: ignore[union-attr]
        for i, (p, m) in enumerate(zip(volumes, matches, strict=True), 1):
            assert m is not None
            if m.group("stem") != stem or int(m.group("index")) != i or int(m.group("count")) != len(volumes):
                raise InputError(f"{p.name}: expected volume {i} of {len(volumes)} of {stem}: give every volume "
                                 "of one bundle, in order")
    if not _SAFE_NAME.match(stem):
        raise InputError(f"{stem}: the bundle name has characters a parity header does not allow")
    return stem


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
    out_dir.mkdir(parents=True, exist_ok=True)
    partials = [p.with_name(p.name + ".partial") for p in paths]
    ins: list[BinaryIO] = []
    outs: list[BinaryIO] = []
    try:
        ins = [p.open("rb") for p in volumes]
        outs = [p.open("wb") for p in partials]
        for f, h in zip(outs, placeholder, strict=True):
            f.write(h)
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
        for j, f in enumerate(outs, 1):
            final = header(vol_hashes, par_hashes, j).to_bytes()
            assert len(final) == len(placeholder[j - 1])
            f.seek(0)
            f.write(final)
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for part, path in zip(partials, paths, strict=True):
            os.replace(part, path)
        fsync_dir(out_dir)
    except OSError as e:
        _discard(outs, partials)
        raise GapsyncError(f"{out_dir}: cannot write the parity files ({e.strerror or e})") from e
    except BaseException:
        _discard(outs, partials)
        raise
    finally:
        for f in ins:
            f.close()
    return paths


def _read_minisig(volume: Path) -> str | None:
    sig = volume.with_name(volume.name + ".minisig")
    try:
        if sig.stat().st_size > MAX_MINISIG:
            return None
        return sig.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return None


def _discard(files: list[BinaryIO], partials: list[Path]) -> None:
    for f in files:
        if not f.closed:
            f.close()
    for p in partials:
        p.unlink(missing_ok=True)


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

    def to_dict(self) -> dict:
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

    def to_dict(self) -> dict:
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
            files += sorted(p for p in item.iterdir() if p.is_file() and p.name.endswith((SUFFIX, PARITY_SUFFIX)))
        elif item.is_file():
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
        candidates = by_name.get(rec.name, []) + [d / rec.name for d in dirs if (d / rec.name).is_file()]
        seen: set[Path] = set()
        for c in candidates:
            if c.resolve() in seen:
                continue
            seen.add(c.resolve())
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
        actual = path.stat().st_size - offset
        if actual != size:
            return f"{actual} bytes, expected {size}"
        h = hashlib.sha256()
        with path.open("rb") as f:
            f.seek(offset)
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if h.hexdigest() != sha256:
        return "sha256 does not match"
    return ""


# -- repairing ------------------------------------------------------------------------------

def repair(paths: list[Path] | Path, out_dir: Path | None = None, *, scan: ParityScan | None = None) -> list[Path]:
    """Rebuild every lost or damaged volume (and parity file) of the set found in ``paths``
    into ``out_dir`` (default: the directory of the first usable parity file); returns the
    rebuilt files, [] when nothing was lost.

    Any k good pieces suffice, read stripe by stripe (good data volumes first: zfec decodes
    those for free). Each rebuilt file is hashed as it is written and must match the recorded
    sha256 before it is renamed into place, replacing a damaged copy of the same name. A volume's
    recorded ``.minisig`` is restored if it is missing. More than N lost pieces: VerificationError,
    nothing written.
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
        out_dir = next(p.path for p in scan.parity if p.status == "ok").parent  # type: ignore[union-attr]
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces = good[:h.k]
    lost_vols = [p for p in lost if p.kind == "volume"]
    lost_par = [p for p in lost if p.kind == "parity"]
    targets = [out_dir / p.name for p in lost_vols + lost_par]
    partials = [t.with_name(t.name + ".partial") for t in targets]
    ins: list[BinaryIO] = []
    outs: list[BinaryIO] = []
    try:
        for p in pieces:
            f = p.path.open("rb")  # type: ignore[union-attr]
            ins.append(f)
            f.seek(p.offset)
        outs = [t.open("wb") for t in partials]
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
        for f in outs:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for part, t in zip(partials, targets, strict=True):
            os.replace(part, t)
        for p, t in zip(lost_vols, targets, strict=False):
            sig = h.volumes[p.blocknum].minisig
            sig_path = t.with_name(t.name + ".minisig")
            if sig is not None and not sig_path.exists():
                sig_path.write_text(sig, encoding="utf-8")
        fsync_dir(out_dir)
    except OSError as e:
        _discard(outs, partials)
        raise GapsyncError(f"{out_dir}: cannot write the rebuilt files ({e.strerror or e})") from e
    except BaseException:
        _discard(outs, partials)
        raise
    finally:
        for f in ins:
            f.close()
    return targets
