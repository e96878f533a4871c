"""Tree snapshots: a mirror (or any directory) compared byte for byte before and after an operation."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(root: Path, ignore: tuple[str, ...] = (".gapsync/audit.log", ".gapsync/audit.log.head", ".gapsync/lock")) -> dict:
    """Every file, link and directory under root with its bytes (or link target), for byte-for-byte compares."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if rel in ignore:
                continue
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            elif p.is_dir():
                out[rel] = ("dir", None)
    return out
