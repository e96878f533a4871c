"""TUF helpers both sides share: how gapsync marks its metadata (``x-gapsync: {channel, format}``),
the bytes a signature covers, the key checks a root must pass and the fingerprint people compare.

The connected side's repository (``bundler/trust_repo.py``) signs with them, the air side's
verification (``mirror/trust.py``) and approvals (``bundle/approvals.py``) check with them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import CanonicalJSONSerializer, JSONSerializer

from gapsync.canonical import canonical_json

FORMAT = 1
EXT_FIELD = "x-gapsync"
_SERIALIZER = JSONSerializer(compact=False)


def ext(channel: str, fmt: int = FORMAT) -> dict[str, Any]:
    """``fmt``: the bundle format (2 when blobs span volumes in parts: gapsync/bundle/archive.py)."""
    return {EXT_FIELD: {"channel": channel, "format": fmt}}


def channel_of(md: Metadata[Any]) -> str | None:
    info = md.signed.unrecognized_fields.get(EXT_FIELD)
    return info.get("channel") if isinstance(info, dict) else None


def to_bytes(md: Metadata[Any]) -> bytes:
    return md.to_bytes(_SERIALIZER)


def duplicate_key_material(root: Root) -> list[str]:
    """Key ids that share key material with another id: TUF counts ids, so this would let one
    key count twice towards a threshold."""
    seen: dict[tuple[str, str, bytes], str] = {}
    dups = []
    for keyid, key in root.keys.items():
        material = (key.keytype, key.scheme, canonical_json(key.keyval))
        if material in seen:
            dups.append(keyid)
        seen.setdefault(material, keyid)
    return dups


def signed_digest(md: Metadata[Any]) -> str:
    """sha256 of the canonical bytes of ``md.signed``: what every signature of ``md`` covers.
    An approval side file names the targets metadata it approves by this digest."""
    return hashlib.sha256(signed_bytes(md)).hexdigest()


def signed_bytes(md: Metadata[Any]) -> bytes:
    """The canonical JSON of ``md.signed``: the bytes every TUF signature of ``md`` covers."""
    return CanonicalJSONSerializer().serialize(md.signed)



def fingerprint(root_bytes: bytes) -> str:
    h = hashlib.sha256(root_bytes).hexdigest()
    return ":".join(h[i:i + 4] for i in range(0, 64, 4))
