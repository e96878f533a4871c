"""Build hostile variants of a valid bundle, member by member, without extracting anything."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Member:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    size: int | None = None  # override the header size (lies)
    extra: dict = field(default_factory=dict)


def read_members(bundle: Path) -> list[Member]:
    out = []
    with tarfile.open(bundle) as tf:
        for ti in tf:
            out.append(Member(ti.name, tf.extractfile(ti).read()))
    return out


def write_members(members: list[Member], dst: Path, *, end_blocks: bool = True) -> Path:
    buf = io.BytesIO()
    tf = tarfile.TarFile(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    for m in members:
        ti = tarfile.TarInfo(m.name)
        ti.type, ti.linkname, ti.mode, ti.mtime = m.type, m.linkname, 0o644, 0
        ti.size = len(m.data) if m.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
        tf.addfile(ti, io.BytesIO(m.data) if ti.size else None)
    if end_blocks:
        tf.close()
    data = buf.getvalue()
    dst.write_bytes(data)
    return dst


def raw_header_with_nul(name_before: str, hidden: str, data: bytes) -> bytes:
    """A ustar header whose name field hides bytes after a NUL, followed by the data."""
    ti = tarfile.TarInfo(name_before)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
    block = bytearray(ti.tobuf(tarfile.USTAR_FORMAT))
    raw = (name_before + "\0" + hidden).encode()
    block[0:len(raw)] = raw
    block[148:156] = b" " * 8
    chksum = sum(block)
    block[148:156] = b"%06o\0 " % chksum
    pad = (-len(data)) % 512
    return bytes(block) + data + b"\0" * pad
