"""Receipts: the air side's signed inventory of what it holds, carried back to the DMZ where a
site allows a return path, so ``sync --receipt`` makes a delta against what is really there.

A receipt is JSON: ``{"body": {format, kind, created, host, channels: {name: {version}},
blobs: [sha256...]}, "signature": {"keyid", "sig"}}``, the signature Ed25519 over the canonical
JSON of the body, by a key of the air side whose public half the DMZ was given (``--receipt-key``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gapsync import fsutil
from gapsync.bundle.keys import PublicKey, SigningKey, load_public_key
from gapsync.canonical import canonical_json
from gapsync.errors import InputError, VerificationError

MAX_RECEIPT = 256 << 20  # ~3.5 million blobs listed; read whole, so capped before reading


def _canonical(body: dict[str, Any]) -> bytes:
    return canonical_json(body)


def sign_receipt(body: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """The receipt document: ``body`` and an Ed25519 signature over its canonical JSON."""
    return {"body": body, "signature": {"keyid": key.public.tuf_key().keyid, "sig": key.sign(_canonical(body)).hex()}}


def read_receipt(path: Path, key_file: Path) -> dict[str, Any]:
    """The verified body of a receipt, or VerificationError (another key, edited content)."""
    from cryptography.exceptions import InvalidSignature

    public: PublicKey = load_public_key(key_file)
    try:
        # a link or FIFO is refused at once (fsutil), a file larger than MAX_RECEIPT before it is read
        doc = json.loads(fsutil.read_regular(path, MAX_RECEIPT))
        body, sig = doc["body"], doc["signature"]
        if not isinstance(body, dict) or body.get("kind") != "gapsync-receipt" or not isinstance(body.get("blobs"), list):
            raise ValueError("not a gapsync receipt")
        if not isinstance(sig, dict) or not isinstance(sig.get("sig"), str):
            raise ValueError("no signature")
    except RecursionError as e:  # json.loads on "[[[[...": one line, not a traceback
        raise InputError(f"{path}: not a gapsync receipt (nested too deeply to parse)") from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a gapsync receipt ({e})") from e
    if sig.get("keyid") != public.tuf_key().keyid:
        raise VerificationError(f"{path}: signed by key {str(sig.get('keyid'))[:16]}…, not by {key_file}")
    try:
        public.crypto.verify(bytes.fromhex(sig["sig"]), _canonical(body))
    except (InvalidSignature, ValueError, RecursionError) as e:
        raise VerificationError(f"{path}: the receipt's signature does not match its content") from e
    return body
