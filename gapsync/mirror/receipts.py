"""The air side's receipt: what this mirror holds (its blobs, each channel's version), signed in
the receipt format of ``bundle/receipt.py`` for the DMZ's ``sync --receipt``."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

from gapsync.bundle.keys import SigningKey
from gapsync.bundle.receipt import sign_receipt
from gapsync.fsutil import write_atomic
from gapsync.mirror.layout import MirrorLayout


def write_receipt(mirror: Path, out: Path, key: SigningKey) -> dict:
    layout = MirrorLayout(mirror)
    layout.require()
    blobs = sorted(p.name for p in (layout.meta / "blobs" / "sha256").glob("*/*") if p.is_file() and len(p.name) == 64)
    body = {"format": 1, "kind": "gapsync-receipt", "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(), "channels": {c: {"version": layout.state(c).version} for c in layout.channels()},
            "blobs": blobs}
    doc = sign_receipt(body, key)
    write_atomic(out, json.dumps(doc, indent=1).encode())
    return body
