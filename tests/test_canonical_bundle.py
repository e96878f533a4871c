"""One canonical bundle form (issue 13, class 7): the reader accepts exactly the bytes the writer
writes and refuses the rest before it parses a large member.

Each hostile bundle is a real bundle of the session's channel (tests/conftest.py ``world``)
rewritten with ``tarfile`` with one thing changed: the format (GNU), a header field (mode 4755,
another owner), extra pax records, a duplicate blob whose name ends in a newline, an oversized
metadata member. The same rewrite with nothing changed is accepted, so each refusal is for the
change alone.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gapsync.bundle.archive import METADATA_LIMITS, BundleReader
from tests.support.cli import GAPSYNC, cli, isolated_env


def _members(bundle: Path) -> list[tuple[str, bytes]]:
    with BundleReader(bundle) as r:
        out = [(f"metadata/{n}", d) for n, d in r.read_metadata().items()]
        out += [(f"blobs/sha256/{m.digest}", b"".join(r.chunks(m))) for m in r.iter_blobs()]
    return out


def _mtime(bundle: Path) -> int:
    with tarfile.open(bundle) as tf:
        return tf.next().mtime  # type: ignore[union-attr]


def rewrite(bundle: Path, out: Path, *, fmt: int = tarfile.PAX_FORMAT, tweak=None, extra=()) -> Path:
    """``bundle`` written again by tarfile with the writer's header fields; ``tweak(ti)`` may
    change one member's header; ``extra`` members are appended after the blobs."""
    mtime = _mtime(bundle)
    with tarfile.open(out, "w", format=fmt, encoding="utf-8") as tf:
        for name, data in [*_members(bundle), *extra]:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode, ti.type = len(data), mtime, 0o644, tarfile.REGTYPE
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if tweak is not None:
                tweak(ti)
            tf.addfile(ti, io.BytesIO(data))
    return out


def verify(path: Path, mirror: Path):
    return cli("bundle", "verify", path, "--mirror", mirror)


def refused(r, *words: str) -> str:
    line = r.err.strip().splitlines()[-1]
    assert r.code == 3, r.err
    assert line.startswith("gapsync: error:") and "internal error" not in r.err, r.err
    for w in words:
        assert w in line, (w, line)
    return line


def test_the_same_rewrite_is_accepted(world, mirror, tmp_path):
    out = rewrite(world.b1, tmp_path / "same.gapsync")
    assert out.read_bytes() == world.b1.read_bytes()  # tarfile with the writer's fields: the same bytes
    assert verify(out, mirror).code == 0


def test_gnu_format_headers_are_refused(world, mirror, tmp_path):
    refused(verify(rewrite(world.b1, tmp_path / "gnu.gapsync", fmt=tarfile.GNU_FORMAT), mirror), "GNU")


def test_a_gnu_long_name_header_is_refused(world, mirror, tmp_path):
    # GNU format writes a LONGNAME block for a name over 100 bytes: refused before it is read
    bad = rewrite(world.b1, tmp_path / "gnu-long.gapsync", fmt=tarfile.GNU_FORMAT,
                  extra=[("blobs/sha256/" + "a" * 64 + "/" + "x" * 100, b"")])
    refused(verify(bad, mirror), "GNU")


@pytest.mark.parametrize("field,value,word", [("mode", 0o4755, "mode 4755"), ("uid", 1000, "owner"),
                                              ("uname", "evil", "owner"), ("gid", 50, "owner")])
def test_header_fields_other_than_the_writers_are_refused(world, mirror, tmp_path, field, value, word):
    def tweak(ti):
        if ti.name.startswith("blobs/"):
            setattr(ti, field, value)
    refused(verify(rewrite(world.b1, tmp_path / "f.gapsync", tweak=tweak), mirror), word)


def test_another_mtime_on_one_member_is_refused(world, mirror, tmp_path):
    def tweak(ti):
        if ti.name.startswith("blobs/"):
            ti.mtime += 1
    refused(verify(rewrite(world.b1, tmp_path / "t.gapsync", tweak=tweak), mirror), "mtime")


@pytest.mark.parametrize("size", [100, 60_000])
def test_pax_records_the_writer_does_not_write_are_refused(world, mirror, tmp_path, size):
    def tweak(ti):
        ti.pax_headers = {"comment": "x" * size}
    line = refused(verify(rewrite(world.b1, tmp_path / "pax.gapsync", tweak=tweak), mirror))
    assert ("pax records" in line and "comment" in line) or "extended header" in line, line


def test_a_duplicate_blob_named_with_a_trailing_newline_is_refused(world, mirror, tmp_path):
    name, data = next((n, d) for n, d in _members(world.b1) if n.startswith("blobs/"))
    bad = rewrite(world.b1, tmp_path / "nl.gapsync", extra=[(name + "\n", data)])
    refused(verify(bad, mirror), "unexpected member")


def test_oversize_metadata_is_refused_from_its_header_with_memory_bounded(world, tmp_path):
    """An unsigned 63 MB targets.json: refused before a byte of it is read (the process stays
    far below what reading and parsing it would take: ~1.7 GB)."""
    size = 63 << 20
    assert size > METADATA_LIMITS["targets"]
    bad = tmp_path / "big.gapsync"
    root = next(d for n, d in _members(world.b1) if n.endswith("1.root.json"))
    with tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data_size, fileobj in (("metadata/1.root.json", len(root), io.BytesIO(root)),
                                         ("metadata/targets.json", size, _Repeat(b'{"a": [' , size))):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = data_size, 0, 0o644
            ti.uname = ti.gname = ""
            tf.addfile(ti, fileobj)
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)\n"
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.stderr.write(r.stderr)\n")
    r = subprocess.run([sys.executable, "-c", probe, GAPSYNC, "bundle", "inspect", str(bad)], capture_output=True,
                       text=True, env=isolated_env(), timeout=180)
    code, rss_kb = map(int, r.stdout.split())
    assert code == 3, r.stderr
    assert "metadata/targets.json" in r.stderr and f"limit {METADATA_LIMITS['targets']}" in r.stderr, r.stderr
    assert rss_kb < 150_000, f"{rss_kb} kB"


class _Repeat(io.RawIOBase):
    """``size`` bytes of a pattern, streamed (the test does not hold 63 MB either)."""

    def __init__(self, pattern: bytes, size: int):
        self.pattern, self.left = pattern, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return (self.pattern * (n // len(self.pattern) + 1))[:n]


def test_inspect_of_unsigned_fields_of_the_wrong_type_is_one_line(world, tmp_path):
    """bundle inspect reads unsigned fields: a targets mapping whose entries are lists, lengths
    that are strings... one line, exit 3."""
    import json

    members = dict(_members(world.b1))
    doc = json.loads(members["metadata/targets.json"])
    for t in doc["signed"]["targets"].values():
        t["length"] = "many"
    members["metadata/targets.json"] = json.dumps(doc).encode()
    bad = tmp_path / "types.gapsync"
    mtime = _mtime(world.b1)
    with tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), mtime, 0o644
            ti.uname = ti.gname = ""
            tf.addfile(ti, io.BytesIO(data))
    r = cli("bundle", "inspect", bad)
    assert r.code == 3 and "\n" not in r.err.strip() and "internal error" not in r.err, r.err
    assert "wrong type" in r.err, r.err
