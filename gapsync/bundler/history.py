"""What the channel has shipped, version by version: the blobs of every target of every bundle
(``STATE/<channel>/shipped/<N>.json``), so a delta bundle can leave out what the air side was
sent before. The air side keeps everything it imported (the mirror accumulates), so the union
over all versions is what it has, if it imported every bundle; a receipt says so for sure."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gapsync import fsutil
from gapsync.model import Target


def record(channel_dir: Path, version: int, targets: list[Target], carried: set[str]) -> None:
    d = channel_dir / "shipped"
    doc = {"version": version, "targets": {t.path: t.blob.digest for t in targets}, "carried": sorted(carried)}
    fsutil.write_atomic(d / f"{version}.json", json.dumps(doc, sort_keys=True).encode())


def versions(channel_dir: Path) -> list[int]:
    d = channel_dir / "shipped"
    return sorted(int(m.group(1)) for p in d.glob("*.json") if (m := re.fullmatch(r"(\d+)\.json", p.name))) if d.is_dir() else []


def shipped_digests(channel_dir: Path) -> set[str]:
    """Every blob any shipped version named (so the air side has them once it imported them all)."""
    out: set[str] = set()
    for v in versions(channel_dir):
        out.update(json.loads((channel_dir / "shipped" / f"{v}.json").read_text())["targets"].values())
    return out


def last_targets(channel_dir: Path) -> dict[str, str]:
    vs = versions(channel_dir)
    return json.loads((channel_dir / "shipped" / f"{vs[-1]}.json").read_text())["targets"] if vs else {}
