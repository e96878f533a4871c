"""The air side's receipt: what this mirror holds (its blobs, each channel's version), signed in
the receipt format of ``bundle/receipt.py`` for the DMZ's ``sync --receipt``; each receipt
written is recorded in the mirror's audit log (``receipt``)."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

from gapsync.audit import AuditLog
from gapsync.bundle.keys import SigningKey
from gapsync.bundle.receipt import sign_receipt
from gapsync.fsutil import write_atomic
from gapsync.mirror.layout import MirrorLayout


def write_receipt(mirror: Path, out: Path, key: SigningKey) -> dict:
    layout = MirrorLayout(mirror)
    layout.require()
    blobs = layout.blob_digests()
    body = {"format": 1, "kind": "gapsync-receipt", "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(), "channels": {c: {"version": layout.state(c).version} for c in layout.channels()},
            "blobs": blobs}
    doc = sign_receipt(body, key)
    write_atomic(out, json.dumps(doc, indent=1).encode())
    AuditLog(layout.audit_path).append("receipt", "ok", out=str(out), blobs=len(blobs), channels=body["channels"])
    return body
