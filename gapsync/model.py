"""Nouns shared by both sides. No I/O here: these are values that other modules act on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
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


@dataclass(frozen=True, order=True)
class ArtifactKey:
    """One artifact, as findings, decisions, waivers and reports name it:
    ``python:requests@2.32.5``, ``oci:docker.io/library/python@3.12`` (the tag, else the digest),
    ``model:org/name@main``, ``dataset:org/name@main``, ``conda:numpy@2.1.0``."""

    kind: str
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> ArtifactKey:
        """The inverse of ``str``: the kind ends at the first ``:``, the version starts after the
        last ``@`` (a name never holds ``@``; a registry name may hold ``:``, a digest version too)."""
        kind, sep, rest = text.partition(":")
        name, at, version = rest.rpartition("@")
        if not (sep and at and kind and name):
            raise ValueError(f"not an artifact key (kind:name@version): {text!r}")
        return cls(kind, name, version)


def artifact_key(kind: str, name: str, version: str) -> str:
    """``kind:name@version``, the one spelling of an artifact key."""
    return str(ArtifactKey(kind, name, version))


@dataclass(frozen=True)
class Target:
    """One TUF target of a channel: a path, the blob it names, and what it is (``custom``)."""

    path: str
    blob: BlobRef
    custom: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def kind(self) -> str:
        return str(self.custom.get("kind", ""))


class Severity(StrEnum):
    """Ordered from worst to least; UNKNOWN is its own value so the policy must decide it."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        return {"critical": 5, "high": 4, "medium": 3, "low": 2, "info": 1, "unknown": 0}[self.value]


@dataclass(frozen=True)
class Finding:
    """What a scanner says about one file of an artifact. Scanners read bytes; they never load."""

    scanner: str  # "model", "vulns", "license", ...
    rule: str  # stable id, e.g. "pickle.global.unsafe" or an advisory id
    severity: Severity
    message: str  # one line for people: what and why
    file: str | None = None  # the artifact file (or path scanned)
    location: str | None = None  # inner path, e.g. a zip entry
    offset: int | None = None  # byte offset inside ``location`` (or ``file``)
    evidence: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"scanner": self.scanner, "rule": self.rule, "severity": self.severity.value, "message": self.message,
                "file": self.file, "location": self.location, "offset": self.offset, "evidence": self.evidence}


class Action(StrEnum):
    ALLOW = "allow"
    WARN = "warn"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return {"allow": 0, "warn": 1, "block": 2}[self.value]


@dataclass(frozen=True)
class Decision:
    """What the policy made of one artifact's findings: the action, every reason that led to it
    (the rule that fired and the finding it fired on), and the waivers that turned a block or a
    warning into an allow."""

    artifact: str  # "python:requests@2.32.5", "oci:docker.io/library/python:3.12", "model:org/name@main"
    action: Action
    reasons: tuple[dict[str, Any], ...] = ()  # [{rule, action, finding?, message}]
    waivers: tuple[dict[str, Any], ...] = ()  # [{id, package, until, reason, approved_by}]

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "action": self.action.value, "reasons": list(self.reasons),
                "waivers": list(self.waivers)}
