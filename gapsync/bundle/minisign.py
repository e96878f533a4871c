"""Detached signatures in minisign's prehashed form (``ED``), verifiable by the stock tool.

signature = Ed25519(BLAKE2b-512(file)); global signature = Ed25519(signature + trusted comment).
The caller hashes the file while writing it, so signing a 50 GB bundle reads it zero extra times.
"""

from __future__ import annotations

import base64
from pathlib import Path

from gapsync import fsutil
from gapsync.bundle.keys import PublicKey, SigningKey
from gapsync.errors import VerificationError
from gapsync.hashing import blake2b_512

CHUNK = 1 << 20
MAX_SIG_FILE = 4096  # a .minisig is four short lines


def blake2b_file(path: Path) -> bytes:
    h = blake2b_512()
    with fsutil.open_regular(path) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest()


def signature_text(key: SigningKey, file_blake2b: bytes, trusted_comment: str) -> str:
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise ValueError("trusted comment must be one line")
    keynum = key.public.keynum
    sig = key.sign(file_blake2b)
    global_sig = key.sign(sig + trusted_comment.encode())
    return (
        f"untrusted comment: signature from gapsync key {keynum[::-1].hex().upper()}\n"
        f"{base64.b64encode(b'ED' + keynum + sig).decode()}\n"
        f"trusted comment: {trusted_comment}\n"
        f"{base64.b64encode(global_sig).decode()}\n"
    )


def write_signature(sig_path: Path, key: SigningKey, file_blake2b: bytes, trusted_comment: str) -> None:
    """Written through fsutil: a link or special file at the .minisig name is refused, never followed."""
    fsutil.write_atomic(sig_path, signature_text(key, file_blake2b, trusted_comment).encode())


def verify(path: Path, sig_path: Path, public: PublicKey) -> str:
    """Check a .minisig the way ``minisign -V`` does; return the trusted comment."""
    from cryptography.exceptions import InvalidSignature

    try:
        lines = fsutil.read_regular(sig_path, MAX_SIG_FILE).decode().splitlines()
        blob = base64.b64decode(lines[1], validate=True)
        comment_line = lines[2]
        global_sig = base64.b64decode(lines[3], validate=True)
    except (OSError, IndexError, ValueError) as e:  # UnsafeFileError (a link, a FIFO) passes through
        raise VerificationError(f"{sig_path}: not a minisign signature file") from e
    if len(blob) != 74 or blob[:2] != b"ED":
        raise VerificationError(f"{sig_path}: not a prehashed (ED) minisign signature")
    if blob[2:10] != public.keynum:
        raise VerificationError(f"{sig_path}: signed by another key")
    if not comment_line.startswith("trusted comment: "):
        raise VerificationError(f"{sig_path}: missing trusted comment")
    comment = comment_line[len("trusted comment: "):]
    try:
        public.crypto.verify(blob[10:], blake2b_file(path))
        public.crypto.verify(global_sig, blob[10:] + comment.encode())
    except InvalidSignature as e:
        raise VerificationError(f"{path}: minisign signature does not match the file") from e
    return comment
