"""Build hostile variants of a valid bundle, member by member, without extracting anything, and
check that the air side refuses one the way it must (``assert_refused``)."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import cli
from tests.support.trees import snapshot


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


def assert_refused(bundle: Path, mirror: Path, *reason: str) -> str:
    """``import`` refuses ``bundle`` with exit 3 and one line naming it and each ``reason`` word; the
    mirror is unchanged byte for byte, no staging is left, one audit entry says "refused"; and
    ``bundle verify`` refuses it too."""
    before = snapshot(mirror)
    log = mirror / ".gapsync/audit.log"
    n = len(log.read_text().splitlines())
    r = cli("import", bundle, "--mirror", mirror)
    assert r.code == 3, (r.code, r.out, r.err)
    err = r.err.strip()
    assert "\n" not in err and str(bundle) in err, err
    for word in reason:
        assert word in err, err
    assert snapshot(mirror) == before
    assert not any((mirror / ".gapsync/staging").iterdir())
    entries = log.read_text().splitlines()
    assert len(entries) == n + 1 and json.loads(entries[-1])["result"] == "refused"
    # and verify refuses it too, publishing nothing
    assert cli("bundle", "verify", bundle, "--mirror", mirror).code == 3
    assert snapshot(mirror) == before
    return err


def root_with_duplicate_key(ch_root: Path, key_path: Path, version: int):
    """The channel's root, re-signed at ``version``, listing its key a second time under another id."""
    from securesystemslib.signer import SSlibKey
    from tuf.api.metadata import Metadata, Root

    from gapsync.bundle.keys import load_signing_key

    k = load_signing_key(key_path)
    md = Metadata[Root].from_bytes(ch_root.read_bytes())
    real = k.public.tuf_key()
    twin = SSlibKey("f" * 64, real.keytype, real.scheme, dict(real.keyval))
    md.signed.add_key(twin, "root")
    md.signed.add_key(twin, "targets")
    md.signed.version = version
    md.signatures.clear()
    md.sign(k.tuf_signer())
    return md
