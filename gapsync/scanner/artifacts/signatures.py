"""Key-based image signatures (cosign's simple signing, as ``cosign sign --key`` and ``skopeo copy
--sign-by-sigstore-private-key`` write them), verified without running anything.

A signature is an OCI artifact attached to the image (tag ``sha256-<hex>.sig`` or a referrer):
each layer of media type ``application/vnd.dev.cosign.simplesigning.v1+json`` is a JSON payload
whose ``critical.image.docker-manifest-digest`` names the signed manifest, and its annotation
``dev.cosignproject.cosign/signature`` holds the base64 signature over the payload's exact bytes
(ECDSA P-256 with SHA-256, or Ed25519). Verified = one payload names the image's digest and its
signature verifies under one of the policy's public keys. Both sides of the gap call the same
two pure functions: :func:`candidates` (from the signature manifest and its blobs) and
:func:`verify` (no I/O).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
MAX_PAYLOAD = 64 * 1024  # a simple-signing payload is a few hundred bytes
MAX_LAYERS = 64  # signatures in one signature manifest


class KeyError_(ValueError):
    """A public key that is not a PEM ECDSA P-256 or Ed25519 key."""


@dataclass(frozen=True)
class PublicKey:
    keyid: str  # sha256 of the DER SubjectPublicKeyInfo, first 16 hex (what reports show)
    key: object

    @classmethod
    def from_pem(cls, pem: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as e:
            raise KeyError_(f"not a PEM public key ({str(e)[:80]})") from None
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise KeyError_(f"ECDSA key on {key.curve.name}; only P-256 (cosign, skopeo) is accepted")
        elif not isinstance(key, ed25519.Ed25519PublicKey):
            raise KeyError_(f"a {type(key).__name__}; only ECDSA P-256 and Ed25519 keys are accepted")
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(hashlib.sha256(der).hexdigest()[:16], key)

    def verifies(self, signature: bytes, payload: bytes) -> bool:
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            else:
                self.key.verify(signature, payload)  # type: ignore[attr-defined]
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Candidate:
    """One signature found next to an image: where it is, its payload and its signature."""

    source: str  # the signature artifact (tag or digest)
    payload: bytes
    signature: str  # base64, as in the annotation


def candidates(manifest: bytes, read_blob: Callable[[str, int], bytes | None], source: str) -> tuple[list[Candidate], list[str]]:
    """The simple-signing layers of a signature manifest; ``read_blob(digest, size)`` gives a
    layer's verified bytes (or None when it is absent). Returns (candidates, problems)."""
    problems: list[str] = []
    try:
        doc = json.loads(manifest)
    except (ValueError, RecursionError):
        return [], [f"{source}: the signature manifest is not JSON"]
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        return [], [f"{source}: the signature manifest has no layers"]
    out = []
    for d in layers[:MAX_LAYERS]:
        if not isinstance(d, dict) or d.get("mediaType") != SIMPLE_SIGNING:
            continue
        raw_ann = d.get("annotations")
        ann: dict[str, Any] = raw_ann if isinstance(raw_ann, dict) else {}
        sig, digest, size = ann.get(SIGNATURE_ANNOTATION), d.get("digest"), d.get("size")
        if not isinstance(sig, str) or not isinstance(digest, str) or not isinstance(size, int) or size > MAX_PAYLOAD:
            problems.append(f"{source}: a signature layer without a signature annotation, digest or sane size")
            continue
        payload = read_blob(digest, size)
        if payload is None:
            problems.append(f"{source}: payload {digest[:19]} is absent")
            continue
        out.append(Candidate(source, payload, sig))
    return out, problems


def signed_digest(payload: bytes) -> str | None:
    """``critical.image.docker-manifest-digest`` of a simple-signing payload (None if malformed)."""
    try:
        doc = json.loads(payload)
        d = doc["critical"]["image"]["docker-manifest-digest"]
        kind = doc["critical"].get("type")
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return None
    if kind not in (None, "cosign container image signature", "atomic container signature"):
        return None
    return d if isinstance(d, str) else None


def verify(image_digest: str, found: list[Candidate], keys: list[PublicKey]) -> tuple[list[dict], list[str]]:
    """(verified [{key, source, digest}], reasons why the others did not verify). Pure."""
    ok: list[dict] = []
    why: list[str] = []
    for c in found:
        named = signed_digest(c.payload)
        if named is None:
            why.append(f"{c.source}: the payload is not a simple-signing payload")
            continue
        if named != image_digest:
            why.append(f"{c.source}: signs {named[:19]}…, not this image's {image_digest[:19]}…")
            continue
        try:
            raw = base64.b64decode(c.signature, validate=True)
        except (binascii.Error, ValueError):
            why.append(f"{c.source}: the signature annotation is not base64")
            continue
        key = next((k for k in keys if k.verifies(raw, c.payload)), None)
        if key is None:
            why.append(f"{c.source}: the signature does not verify with any of the policy's {len(keys)} key(s)")
            continue
        ok.append({"key": key.keyid, "source": c.source, "digest": image_digest})
    return ok, why


def image_meta(digest: str, attached: list[tuple[str, bytes]], read_blob: Callable[[str, int], bytes | None]) -> dict:
    """What a scan subject of an image carries for the policy: its digest and the signature
    candidates of the artifacts attached to it (``attached``: (source, manifest bytes))."""
    found: list[Candidate] = []
    problems: list[str] = []
    for source, manifest in attached:
        c, p = candidates(manifest, read_blob, source)
        found += c
        problems += p
    return {"digest": digest, "signatures": found, "signature_problems": problems}


def file_reader(path_of: Callable[[str], str | PathLike[str]]) -> Callable[[str, int], bytes | None]:
    """``read_blob`` over a content-addressed store: the file named by the digest's hex, if it
    is a regular file of the declared size (read at most that many bytes)."""
    import os
    import stat

    def read(digest: str, size: int) -> bytes | None:
        if not digest.startswith("sha256:") or len(digest) != 71:
            return None
        p = path_of(digest[7:])
        try:
            st = os.lstat(p)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return None
        with open(p, "rb") as f:
            data = f.read(size + 1)
        return data if hashlib.sha256(data).hexdigest() == digest[7:] else None

    return read
