"""7z archives: recognised, not opened. The scanner cannot see inside, so it says so (high).

A 7z file is not a format any model loader reads directly, but it is how "nullifAI"-style
payloads travelled: tools extract it and load what comes out. Until a 7z reader is written
(docs/scanner.md lists it as not covered), the archive is reported as unscannable.
"""

from __future__ import annotations

from typing import BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding


def scan_7z(f: BinaryIO, where: Where) -> list[Finding]:
    return [finding(where, "archive.unsupported", Severity.HIGH,
                    "7z archive: gapsync cannot look inside it yet, so whatever it holds was not scanned; "
                    "extract it and scan the files, or convert the model")]
