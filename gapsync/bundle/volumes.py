"""Split a bundle into volumes for media with a file-size limit (FAT32: 4 GiB - 1 per file).

Every volume is a complete, valid bundle (``bundle.py``): all the metadata members, then its
share of the blobs. So each one verifies alone with TUF and can be imported alone, in any order,
and a lost volume costs only its own blobs (or nothing, with parity: ``parity.py``). A blob that
fits in a volume is carried whole in one volume. A blob larger than a volume is split into
parts (format 2): member ``blobs/sha256/<hex>.part/<n>``, each part's volume, offset, length and
sha256 listed in the signed targets metadata every volume carries (``custom.parts`` of the
``gapsync/bundle.json`` target), so each part is checked as it is read, with no other volume at
hand; the importer keeps verified parts in staging until the blob is whole, then checks the
whole blob's sha256. A set without a split blob stays format 1, readable by every gapsync.

Sizes are computed exactly, from the same tar header encoding ``BundleWriter`` uses, so a plan
that fits is a file that fits (``write_volumes`` checks the written sizes against the plan).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gapsync import fsutil
from gapsync.bundle.archive import BLOCK, RECORD, SUFFIX, BundleBody, BundleWriter, member_header
from gapsync.errors import GapsyncError, InputError
from gapsync.model import BlobRef

#: Largest single file on common media. FAT32 stores the size in 32 bits; DVD±R single layer
#: and BD-R 25 GB are their nominal capacities (one file filling the disc).
MEDIA: dict[str, int] = {"fat32": 4 * 1024**3 - 1, "dvd": 4_700_000_000, "bd25": 25_025_314_816}
#: Media with no per-file limit beyond their capacity (exFAT: 16 EiB per file): no volumes.
UNLIMITED_MEDIA = ("exfat",)
MIN_PART = 64 * 1024  # a part goes into the room left in a volume only if at least this much fits

#: ``<stem>.vNNofMM.gapsync``: what a volume's name looks like (a single volume is ``<stem>.gapsync``).
VOLUME_RE = re.compile(r"(?P<stem>.+)\.v(?P<index>[0-9]{2,})of(?P<count>[0-9]{2,})" + re.escape(SUFFIX))  # use fullmatch

_UNITS = {"": 1, "b": 1,
          "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_USTAR_MAX_SIZE = 8**11 - 1  # above this the size goes into a pax header (one more header + data block)
_END = 2 * BLOCK  # the two zero blocks that end the archive


def parse_volume_size(value: str | int) -> int:
    """``4GiB``, ``700MB``, ``4.5G``, ``123456`` (bytes) or a medium name (``fat32``, ``dvd``,
    ``bd25``) -> bytes. KiB/MiB/GiB/TiB and the dd-style single letters K/M/G/T are powers of
    1024; kB/MB/GB/TB are powers of 1000, as on the disc packaging."""
    if isinstance(value, bool):
        raise InputError(f"volume size {value!r}: expected a size such as 4GiB or 700MB")
    if isinstance(value, int):
        size = value
    else:
        text = str(value).strip()
        if text.lower() in MEDIA:
            return MEDIA[text.lower()]
        m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)", text)
        if not m or m.group(2).lower() not in _UNITS:
            raise InputError(f"volume size {value!r}: expected a size such as 4GiB, 700MB or 4000000000, "
                             f"or a medium ({', '.join(MEDIA)})")
        number, unit = m.group(1), _UNITS[m.group(2).lower()]
        size = int(number) * unit if "." not in number else int(float(number) * unit)
    if size <= 0:
        raise InputError(f"volume size {value!r}: must be positive")
    return size


def volume_file_name(stem: str, index: int, count: int) -> str:
    """Volume ``index`` (1-based) of ``count``; one volume keeps today's single-file name."""
    if count == 1:
        return f"{stem}{SUFFIX}"
    return f"{stem}.v{index:02d}of{count:02d}{SUFFIX}"


def _header_size(name: str, size: int) -> int:
    if size <= _USTAR_MAX_SIZE and len(name) <= 100 and name.isascii():
        return BLOCK
    return len(member_header(name, size, 0))


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def member_tar_size(name: str, size: int) -> int:
    """Bytes a member takes in the archive: its header(s) and its data padded to whole blocks."""
    return _header_size(name, size) + _padded(size)


def blob_tar_size(size: int) -> int:
    return member_tar_size("blobs/sha256/" + "0" * 64, size)


@dataclass(frozen=True)
class Part:
    """Part ``index`` (1-based) of blob ``digest``: ``length`` bytes from ``offset``, carried in
    volume ``volume`` (1-based). ``sha256`` is filled in by ``hash_parts`` before signing."""

    digest: str
    index: int
    volume: int
    offset: int
    length: int
    sha256: str = ""

    @property
    def member(self) -> str:
        return f"blobs/sha256/{self.digest}.part/{self.index}"

    def to_list(self) -> list[int | str]:
        """The signed form, in ``custom.parts[digest]``: ``[volume, offset, length, sha256]``."""
        return [self.volume, self.offset, self.length, self.sha256]


def part_tar_size(index: int, size: int) -> int:
    return member_tar_size(f"blobs/sha256/{'0' * 64}.part/{index}", size)


def entry_tar_size(entry: str | Part, sizes: Mapping[str, int]) -> int:
    return part_tar_size(entry.index, entry.length) if isinstance(entry, Part) else blob_tar_size(sizes[entry])


def parts_of(plan: list[list[str | Part]]) -> dict[str, list[Part]]:
    """digest -> its parts in order, from a plan."""
    out: dict[str, list[Part]] = {}
    for vol in plan:
        for e in vol:
            if isinstance(e, Part):
                out.setdefault(e.digest, []).append(e)
    for ps in out.values():
        ps.sort(key=lambda p: p.index)
    return out


def parts_table(plan: list[list[str | Part]]) -> dict[str, list[list[int | str]]]:
    """The signed parts table (``custom.parts`` of the bundle.json target)."""
    return {d: [p.to_list() for p in ps] for d, ps in sorted(parts_of(plan).items())}


def hash_parts(plan: list[list[str | Part]], blob_path: Callable[[str], Path]) -> list[list[str | Part]]:
    """The plan with every part's sha256 filled in. Parts are independent, so they are hashed
    two at a time (hashlib releases the GIL): the split blobs are read once more before signing,
    and that read is the whole cost of splitting on the connected side."""
    from concurrent.futures import ThreadPoolExecutor

    def one(p: Part) -> tuple[tuple[str, int], str]:
        h = hashlib.sha256()
        with fsutil.open_regular(blob_path(p.digest)) as f:
            fd, pos, end = f.fileno(), p.offset, p.offset + p.length
            while pos < end:
                chunk = os.pread(fd, min(4 << 20, end - pos), pos)
                if not chunk:
                    raise GapsyncError(f"{blob_path(p.digest)}: shorter than its size; remove it from the cache and run again")
                h.update(chunk)
                pos += len(chunk)
        return (p.digest, p.index), h.hexdigest()

    todo = [p for ps in parts_of(plan).values() for p in ps]
    with ThreadPoolExecutor(max_workers=2) as pool:
        hashes = dict(pool.map(one, todo))
    return [[replace(e, sha256=hashes[(e.digest, e.index)]) if isinstance(e, Part) else e for e in vol] for vol in plan]


def metadata_tar_size(metadata: Mapping[str, bytes]) -> int:
    """What ``plan_volumes`` wants as ``metadata_size``: the bytes all the metadata members
    (``{"1.root.json": b"...", ...}`` as ``BundleWriter.add_metadata`` takes them) occupy in
    the tar, headers and padding included. Not the plain sum of their lengths."""
    return sum(member_tar_size(f"metadata/{name}", len(data)) for name, data in metadata.items())


def archive_size(metadata_size: int, blob_sizes: list[int], parts: Sequence[Part] = ()) -> int:
    """The exact size of a bundle file with these members (end blocks, record padding)."""
    body = metadata_size + sum(blob_tar_size(s) for s in blob_sizes) + sum(part_tar_size(p.index, p.length) for p in parts) + _END
    return -(-body // RECORD) * RECORD


def plan_volumes(metadata_size: int, blobs: list[tuple[str, int]], max_volume_size: int, *,
                 split: bool = False) -> list[list[str | Part]]:
    """Assign blobs ``(digest, size)`` to volumes so that every volume file, with all the
    metadata members (``metadata_size``: see ``metadata_tar_size``), stays within
    ``max_volume_size`` bytes.

    First fit in the given order: each blob goes into the first volume that still has room, so
    the order within a volume is the given order (``bundle.json`` first stays first) and a big
    blob does not strand the room left before it. A blob larger than an empty volume is refused,
    or with ``split`` (format 2) cut into ``Part``s: the first fills the room left in the open
    volumes (at least ``MIN_PART``), in volume order, then whole new volumes, the last part
    leaving its volume open for the blobs after it. Deterministic: same input, same plan. A
    duplicate digest is carried once. No blob: one volume of metadata only.
    """
    usable = max_volume_size // RECORD * RECORD - _END - metadata_size
    if usable < 0:
        raise InputError(f"volume size {max_volume_size} bytes is too small: the metadata alone takes "
                         f"{archive_size(metadata_size, [])} bytes")
    volumes: list[list[str | Part]] = []
    free: list[int] = []
    open_: list[int] = []  # indexes of volumes with room for at least an empty member
    seen: set[str] = set()

    def new_volume() -> int:
        volumes.append([])
        free.append(usable)
        open_.append(len(volumes) - 1)
        return len(volumes) - 1

    def take(vi: int, need: int) -> None:
        free[vi] -= need
        if free[vi] < BLOCK and vi in open_:  # not even an empty blob fits any more: stop looking at it
            open_.remove(vi)

    for digest, size in blobs:
        if digest in seen:
            continue
        seen.add(digest)
        need = blob_tar_size(size)
        if need > usable and not split:
            raise InputError(
                f"blob {digest} is {size} bytes: it does not fit in a volume of {max_volume_size} bytes "
                f"(at most {max(usable - BLOCK, 0) // BLOCK * BLOCK} bytes of blob next to the metadata); "
                f"format 1 does not split a blob across volumes, so choose larger volumes or another medium")
        if need <= usable:
            vi = next((vi for vi in open_ if free[vi] >= need), None)
            if vi is None:
                vi = new_volume()
            volumes[vi].append(digest)
            take(vi, need)
            continue
        if usable < 2 * BLOCK:
            raise InputError(f"volume size {max_volume_size} bytes is too small to carry parts of blob {digest} "
                             f"next to the metadata ({archive_size(metadata_size, [])} bytes)")
        offset, index = 0, 0
        candidates = list(open_)
        while offset < size:
            index += 1
            fresh = not candidates
            vi = candidates.pop(0) if candidates else new_volume()
            header = _header_size(f"blobs/sha256/{digest}.part/{index}", free[vi])
            room = (free[vi] - header) // BLOCK * BLOCK
            length = min(size - offset, room)
            if length < (1 if fresh else min(MIN_PART, size - offset)):  # too little room here: the next volume
                index -= 1
                continue
            volumes[vi].append(Part(digest, index, vi + 1, offset, length))
            take(vi, part_tar_size(index, length))
            offset += length
    return volumes or [[]]


def write_volumes(out_dir: Path, stem: str, metadata: dict[str, bytes], plan: list[list[str | Part]],
                  blob_path: Callable[[str], Path], sizes: dict[str, int], mtime: int,
                  sign: Callable[[Path, bytes], None], max_volume_size: int | None = None,
                  shared: frozenset[str] = frozenset(), body: BundleBody | None = None) -> list[Path]:
    """Write the planned volumes into ``out_dir`` and call ``sign(path, blake2b_512)`` for each
    (the caller writes the ``.minisig``; the hash is of the whole file, computed while writing).

    Each volume is a ``BundleWriter`` bundle: every metadata member in the given order, then the
    volume's blobs (each copied from ``blob_path(digest)`` and checked against its sha256 and
    ``sizes[digest]`` on the way) and parts (``Part``, with their sha256: ``hash_parts``). Names: ``<stem>.vNNofMM.gapsync``, or ``<stem>.gapsync`` when
    there is one volume. Existing files are never overwritten. If anything fails, the volumes
    this call already wrote (and their ``.minisig``) are removed, so a failed run leaves no set
    that looks complete but is not. With ``max_volume_size`` the planned sizes are checked before
    writing a byte.

    ``body``: one volume whose blobs the downloads already wrote (``BundleBody``, usable for
    these blobs; format 3): the other blobs follow them, then the metadata.
    """
    n = len(plan)
    if n == 0:
        raise ValueError("empty volume plan")
    paths = [out_dir / volume_file_name(stem, i, n) for i in range(1, n + 1)]
    with fsutil.Dir(out_dir) as d:  # a link or special file at any name this writes: refused up front
        for p in paths:
            for name in (p.name, p.name + ".partial", p.name + ".minisig"):
                d.check_replaceable(name)
    for p in paths:
        if p.exists():
            raise InputError(f"{p}: already exists")
    placed: set[str | tuple[str, int]] = set()
    for digests in plan:
        for entry in digests:
            key = (entry.digest, entry.index) if isinstance(entry, Part) else entry
            if isinstance(entry, Part) and not entry.sha256:
                raise ValueError(f"part {entry.member} has no sha256 (hash_parts)")
            if key in placed and entry not in shared:  # ``shared``: carried by every volume (bundle.json)
                raise ValueError(f"blob {entry} is planned in two volumes")
            placed.add(key)
    meta_size = metadata_tar_size(metadata)
    expected = [archive_size(meta_size, [sizes[entry] for entry in digests if not isinstance(entry, Part)],
                             [entry for entry in digests if isinstance(entry, Part)]) for digests in plan]
    if max_volume_size is not None:
        for p, size in zip(paths, expected, strict=True):
            if size > max_volume_size:
                raise InputError(f"{p.name}: would be {size} bytes, over the volume size of {max_volume_size}")
    in_body: dict[str, int] = {}
    if body is not None:
        in_body = body.digests()
        if n != 1 or not set(in_body) <= set(plan[0]) or any(isinstance(e, Part) for e in plan[0]):
            raise ValueError("a bundle body is one volume of whole blobs, each in the plan")
    done: list[Path] = []
    try:
        for path, digests, size in zip(paths, plan, expected, strict=True):
            writer = BundleWriter(path, mtime=mtime, body=body)
            try:
                if body is None:  # formats 1 and 2: the metadata first
                    for name, data in metadata.items():
                        writer.add_metadata(name, data)
                for entry in digests:
                    if entry in in_body:
                        continue  # already written, while it downloaded
                    if isinstance(entry, Part):
                        writer.add_part(entry.digest, entry.index, blob_path(entry.digest), entry.offset, entry.length, entry.sha256)
                    else:
                        writer.add_blob(BlobRef(entry, sizes[entry]), blob_path(entry))
                if body is not None:  # format 3: the metadata last
                    for name, data in metadata.items():
                        writer.add_metadata(name, data)
                file_hash = writer.close()
            except OSError as e:
                writer.abort()
                raise GapsyncError(f"{path}: cannot write the volume ({e.strerror or e})") from e
            except BaseException:
                writer.abort()
                raise
            done.append(path)
            if writer.size != size:  # the plan's arithmetic and the writer disagree: a bug, not a medium
                raise GapsyncError(f"{path}: wrote {writer.size} bytes, planned {size}")
            sign(path, file_hash)
    except BaseException:
        for p in done:
            p.unlink(missing_ok=True)
            p.with_name(p.name + ".minisig").unlink(missing_ok=True)
        raise
    return paths
