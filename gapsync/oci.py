"""OCI nouns shared by both sides: media types, image references, platforms, descriptors.

Reference normalization follows the Docker CLI (distribution/reference): a first component
without '.' or ':' (and not 'localhost') is a Docker Hub path, single names there live under
``library/``, the default tag is ``latest``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ALL_MANIFEST_TYPES = (*INDEX_TYPES, *MANIFEST_TYPES)
ACCEPT_MANIFESTS = ", ".join(ALL_MANIFEST_TYPES)
REF_NAME = "org.opencontainers.image.ref.name"

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


def rewritten_index(original: bytes, keep: list[str]) -> bytes:
    """The index with only the listed manifests; deterministic, so both sides compute the same bytes."""
    doc = json.loads(original)
    doc["manifests"] = [d for d in doc.get("manifests", []) if d.get("digest") in keep]
    return json.dumps(doc, indent=2, sort_keys=False).encode()


def hex_of(digest: str) -> str:
    m = DIGEST_RE.match(digest)
    if not m:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return m.group(1)


@dataclass(frozen=True)
class ImageRef:
    registry: str  # docker.io, ghcr.io, 127.0.0.1:5000
    repository: str  # library/python
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        s = text.strip()
        if not s or any(c.isspace() for c in s):
            raise ValueError(f"{text!r}: not an image reference")
        digest = None
        if "@" in s:
            s, digest = s.split("@", 1)
            if not DIGEST_RE.match(digest):
                raise ValueError(f"{text!r}: digest must be sha256:<64 hex>")
        tag = None
        last = s.rsplit("/", 1)[-1]
        if ":" in last:
            s, tag = s.rsplit(":", 1)
            if not TAG_RE.match(tag):
                raise ValueError(f"{text!r}: bad tag {tag!r}")
        first, _, rest = s.partition("/")
        if rest and (("." in first or ":" in first) or first == "localhost"):
            registry, repo = first, rest
        else:
            registry, repo = DOCKER_HUB, s
        if registry in ("index.docker.io", "registry-1.docker.io"):
            registry = DOCKER_HUB
        if registry == DOCKER_HUB and "/" not in repo:
            repo = f"library/{repo}"
        if not REPOSITORY_RE.match(repo):
            raise ValueError(f"{text!r}: bad repository name {repo!r} (lower-case letters, digits, separators)")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, repo, tag, digest)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag  # type: ignore[return-value]

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(re.match(r"^[a-z0-9_]+$", p) for p in parts):
            raise ValueError(f"{text!r}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm/v7")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_descriptor(cls, p: dict) -> Platform:
        return cls(str(p.get("os", "")), str(p.get("architecture", "")), p.get("variant") or None)

    def matches(self, other: Platform) -> bool:
        """A wanted platform without a variant accepts any variant (linux/arm64 = linux/arm64/v8)."""
        return (self.os, self.architecture) == (other.os, other.architecture) and (
            self.variant is None or self.variant == other.variant)

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")
