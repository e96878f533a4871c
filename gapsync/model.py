"""Nouns shared by both sides. No I/O here: these are values that other modules act on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, order=True)
class BlobRef:
    """Bytes named by their sha256; the unit of storage and transfer."""

    digest: str  # lowercase hex sha256
    size: int

    def __post_init__(self) -> None:
        if not SHA256_RE.match(self.digest):
            raise ValueError(f"not a sha256 hex digest: {self.digest!r}")
        if self.size < 0:
            raise ValueError(f"negative size for {self.digest}")


@dataclass(frozen=True)
class Target:
    """One TUF target of a channel: a path, the blob it names, and what it is (``custom``)."""

    path: str
    blob: BlobRef
    custom: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def kind(self) -> str:
        return str(self.custom.get("kind", ""))
