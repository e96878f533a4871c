"""Split a bundle into volumes for media with a file-size limit (FAT32: 4 GiB - 1 per file).

Every volume is a complete, valid v1 bundle (``bundle.py``): all the metadata members, then its
share of the blobs. So each one verifies alone with TUF and can be imported alone, in any order,
and a lost volume costs only its own blobs (or nothing, with parity: ``parity.py``). Blobs are
not split across volumes in format v1: a member is either whole in a volume or absent, which is
what lets a reader check a blob's sha256 without any other file; the price is that a blob larger
than a volume cannot be carried on that medium.

Sizes are computed exactly, from the same tar header encoding ``BundleWriter`` uses, so a plan
that fits is a file that fits (``write_volumes`` checks the written sizes against the plan).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from gapsync import fsutil
from gapsync.bundler.bundle import BLOCK, RECORD, SUFFIX, BundleWriter, member_header
from gapsync.errors import GapsyncError, InputError
from gapsync.model import BlobRef

#: Largest single file on common media. FAT32 stores the size in 32 bits; DVD±R single layer
#: and BD-R 25 GB are their nominal capacities (one file filling the disc).
MEDIA: dict[str, int] = {"fat32": 4 * 1024**3 - 1, "dvd": 4_700_000_000, "bd25": 25_025_314_816}

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


def metadata_tar_size(metadata: Mapping[str, bytes]) -> int:
    """What ``plan_volumes`` wants as ``metadata_size``: the bytes all the metadata members
    (``{"1.root.json": b"...", ...}`` as ``BundleWriter.add_metadata`` takes them) occupy in
    the tar, headers and padding included. Not the plain sum of their lengths."""
    return sum(member_tar_size(f"metadata/{name}", len(data)) for name, data in metadata.items())


def archive_size(metadata_size: int, blob_sizes: list[int]) -> int:
    """The exact size of a bundle file with these members (end blocks, record padding)."""
    body = metadata_size + sum(blob_tar_size(s) for s in blob_sizes) + _END
    return -(-body // RECORD) * RECORD


def plan_volumes(metadata_size: int, blobs: list[tuple[str, int]], max_volume_size: int) -> list[list[str]]:
    """Assign blobs ``(digest, size)`` to volumes so that every volume file, with all the
    metadata members (``metadata_size``: see ``metadata_tar_size``), stays within
    ``max_volume_size`` bytes.

    First fit in the given order: each blob goes into the first volume that still has room, so
    the order within a volume is the given order (``bundle.json`` first stays first) and a big
    blob does not strand the room left before it. Deterministic: same input, same plan. A
    duplicate digest is carried once. No blob: one volume of metadata only.
    """
    usable = max_volume_size // RECORD * RECORD - _END - metadata_size
    if usable < 0:
        raise InputError(f"volume size {max_volume_size} bytes is too small: the metadata alone takes "
                         f"{archive_size(metadata_size, [])} bytes")
    volumes: list[list[str]] = []
    free: list[int] = []
    open_: list[int] = []  # indexes of volumes with room for at least an empty member
    seen: set[str] = set()
    for digest, size in blobs:
        if digest in seen:
            continue
        seen.add(digest)
        need = blob_tar_size(size)
        if need > usable:
            raise InputError(
                f"blob {digest} is {size} bytes: it does not fit in a volume of {max_volume_size} bytes "
                f"(at most {max(usable - BLOCK, 0) // BLOCK * BLOCK} bytes of blob next to the metadata); "
                f"format v1 does not split a blob across volumes, so choose larger volumes or another medium")
        pos = next((p for p, vi in enumerate(open_) if free[vi] >= need), None)
        if pos is None:
            volumes.append([])
            free.append(usable)
            open_.append(len(volumes) - 1)
            pos = len(open_) - 1
        vi = open_[pos]
        volumes[vi].append(digest)
        free[vi] -= need
        if free[vi] < BLOCK:  # not even an empty blob fits any more: stop looking at it
            del open_[pos]
    return volumes or [[]]


def write_volumes(out_dir: Path, stem: str, metadata: dict[str, bytes], plan: list[list[str]],
                  blob_path: Callable[[str], Path], sizes: dict[str, int], mtime: int,
                  sign: Callable[[Path, bytes], None], max_volume_size: int | None = None,
                  shared: frozenset[str] = frozenset()) -> list[Path]:
    """Write the planned volumes into ``out_dir`` and call ``sign(path, blake2b_512)`` for each
    (the caller writes the ``.minisig``; the hash is of the whole file, computed while writing).

    Each volume is a ``BundleWriter`` bundle: every metadata member in the given order, then the
    volume's blobs (each copied from ``blob_path(digest)`` and checked against its sha256 and
    ``sizes[digest]`` on the way). Names: ``<stem>.vNNofMM.gapsync``, or ``<stem>.gapsync`` when
    there is one volume. Existing files are never overwritten. If anything fails, the volumes
    this call already wrote (and their ``.minisig``) are removed, so a failed run leaves no set
    that looks complete but is not. With ``max_volume_size`` the planned sizes are checked before
    writing a byte.
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
    placed: set[str] = set()
    for digests in plan:
        for d in digests:
            if d in placed and d not in shared:  # ``shared``: carried by every volume (bundle.json)
                raise ValueError(f"blob {d} is planned in two volumes")
            placed.add(d)
    meta_size = metadata_tar_size(metadata)
    expected = [archive_size(meta_size, [sizes[d] for d in digests]) for digests in plan]
    if max_volume_size is not None:
        for p, size in zip(paths, expected, strict=True):
            if size > max_volume_size:
                raise InputError(f"{p.name}: would be {size} bytes, over the volume size of {max_volume_size}")
    done: list[Path] = []
    try:
        for path, digests, size in zip(paths, plan, expected, strict=True):
            writer = BundleWriter(path, mtime=mtime)
            try:
                for name, data in metadata.items():
                    writer.add_metadata(name, data)
                for d in digests:
                    writer.add_blob(BlobRef(d, sizes[d]), blob_path(d))
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
