"""The OCI 1.1 referrers tag schema in the mirror's OCI layout.

Artifacts that came through a registry's referrers API (attestations, SBOMs, notation
signatures: manifests with a ``subject``, carried by digest) must be findable next to their image
on the air side. A layout has no referrers API, and many registries (distribution 2.x, so
Debian's docker-registry) have none either; the distribution spec's fallback is a tag
``sha256-<hex of the subject>`` holding an image index of the referrers. The layout keeps that
tag, so ``gapsync serve`` answers it (and ``/v2/<name>/referrers/<digest>`` from it), and
``gapsync push`` pushes it like any tag: oras, cosign and notation look there when a registry
lacks the API. The index is deterministic (sorted by digest) and merges what earlier imports
published, so a re-run writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gapsync.bundle.records import OciImage
from gapsync.model import Target
from gapsync.oci import DIGEST_RE, OCI_INDEX, REF_NAME

MAX_INDEX = 4 << 20


def fallback_tag(name: str, subject: str) -> str:
    return f"{name}:sha256-{subject.split(':', 1)[1]}"


def referrer_indexes(targets: list[Target], entries: list[dict], blob_file) -> list[tuple[str, bytes]]:
    """(layout ref name, index bytes) of each referrers tag the targets add to: the carried
    artifacts with a ``subject`` that came by digest (cosign's ``.sig``/``.att`` tags are their
    own scheme), merged with the tag's current index."""
    groups: dict[str, dict[str, dict]] = {}
    for t in targets:
        if t.kind != "oci-image":
            continue
        c = OciImage.from_target(t)
        subject = c.subject
        if c.tag is not None or subject is None or not DIGEST_RE.match(subject):
            continue
        desc = {"mediaType": c.media_type, "digest": c.digest, "size": t.blob.size}
        if c.artifact_type:
            desc["artifactType"] = c.artifact_type
        groups.setdefault(fallback_tag(c.name, subject), {})[c.digest] = desc
    out = []
    for tag, found in sorted(groups.items()):
        current = next((m for m in entries if m.get("annotations", {}).get(REF_NAME) == tag), None)
        if current is not None:
            for d in _read_index(blob_file(current["digest"]), current.get("size", 0)):
                found.setdefault(d["digest"], d)
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [found[k] for k in sorted(found)]}
        out.append((tag, json.dumps(doc, indent=1, sort_keys=True).encode()))
    return out


def _read_index(path: Path, size: int) -> list[dict]:
    """The referrers listed by a tag this module wrote (anything unreadable: none; it is rewritten)."""
    try:
        if not path.is_file() or path.is_symlink() or size > MAX_INDEX:
            return []
        data = path.read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != "sha256:" + path.name:
            return []
        doc = json.loads(data)
    except (OSError, ValueError):
        return []
    items = doc.get("manifests") if isinstance(doc, dict) else None
    return [d for d in items if isinstance(d, dict) and isinstance(d.get("digest"), str)
            and DIGEST_RE.match(d["digest"])] if isinstance(items, list) else []
