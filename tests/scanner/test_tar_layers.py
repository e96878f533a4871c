"""Tar streams (image layers, archived model directories): pickles inside are found, damage is a finding."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from gapsync.model import Severity
from gapsync.scanner.models import ModelScanner

EVIL = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."  # written, never loaded


def layer(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("app/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    return gzip.compress(raw.getvalue())


def scan(tmp_path: Path, data: bytes) -> list:
    p = tmp_path / "layer.tar.gz"
    p.write_bytes(data)
    return list(ModelScanner().scan_file(p, "layer"))


def test_pickle_inside_a_gzipped_layer_is_found(tmp_path):
    found = scan(tmp_path, layer({"etc/os-release": b"NAME=x\n", "app/model.pkl": EVIL}))
    bad = [f for f in found if f.severity is Severity.CRITICAL]
    assert bad and bad[0].location == "<gzip>!app/model.pkl" and bad[0].evidence.get("global") in ("os.system", "os system", None)


def test_benign_layer_has_no_findings(tmp_path):
    assert [f for f in scan(tmp_path, layer({"usr/lib/x.py": b"print(1)\n", "etc/config.json": b"{}"}))
            if f.severity.rank >= Severity.MEDIUM.rank] == []


def test_damaged_layer_is_a_finding_after_what_came_before(tmp_path):
    data = gzip.decompress(layer({"app/model.pkl": EVIL, "b.txt": b"x" * 5000}))
    broken = gzip.compress(data[:1024 + 512 + 100])  # cut inside the second member's data
    rules = {f.rule for f in scan(tmp_path, broken)}
    assert "tar.corrupt" in rules or "compressed.corrupt" in rules
    assert any(r.startswith("pickle.") for r in rules)
