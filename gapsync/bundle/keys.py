"""Ed25519 signing keys: one private key file (PKCS#8 PEM, mode 0600) and one public key file.

The public key file is in minisign's format so that an operator can check a bundle with the stock
``minisign -Vm BUNDLE -p NAME.pub`` without trusting gapsync; TUF uses the same key material.
Passphrases come from a file or an environment variable, never from the command line, where
they would land in shell history and in ``ps``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gapsync import fsutil
from gapsync.errors import InputError

if TYPE_CHECKING:  # for annotations only: the methods import them when called, as before
    from securesystemslib.signer import CryptoSigner, SSlibKey

PASSPHRASE_ENV = "GAPSYNC_KEY_PASSPHRASE"
PASSPHRASE_FILE_ENV = "GAPSYNC_KEY_PASSPHRASE_FILE"


def key_number(public_raw: bytes) -> bytes:
    """minisign's 8-byte key id; derived from the key so both sides agree without extra state."""
    return hashlib.sha256(public_raw).digest()[:8]


@dataclass(frozen=True)
class PublicKey:
    raw: bytes  # 32 bytes

    @property
    def keynum(self) -> bytes:
        return key_number(self.raw)

    @property
    def crypto(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)

    def minisign_text(self) -> str:
        b64 = base64.b64encode(b"Ed" + self.keynum + self.raw).decode()
        return f"untrusted comment: minisign public key {self.keynum[::-1].hex().upper()}\n{b64}\n"

    def tuf_key(self) -> SSlibKey:
        from securesystemslib.signer import SSlibKey

        return SSlibKey.from_crypto(self.crypto)


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    path: Path

    @property
    def public(self) -> PublicKey:
        raw = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(raw)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def tuf_signer(self) -> CryptoSigner:
        from securesystemslib.signer import CryptoSigner

        return CryptoSigner(self.private, self.public.tuf_key())


def _passphrase(passphrase_file: Path | None) -> bytes | None:
    if passphrase_file is not None:
        return passphrase_file.read_bytes().rstrip(b"\r\n")
    if os.environ.get(PASSPHRASE_FILE_ENV):
        return Path(os.environ[PASSPHRASE_FILE_ENV]).read_bytes().rstrip(b"\r\n")
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV].encode()
    return None


def generate(out_dir: Path, name: str, passphrase_file: Path | None = None) -> tuple[Path, Path]:
    """Write OUT/NAME.key (0600) and OUT/NAME.pub; refuse to overwrite an existing key."""
    if not name or "/" in name or name.startswith("."):
        raise InputError(f"key name {name!r}: use a plain file name")
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for p in (key_path, pub_path):
        if p.exists():
            raise InputError(f"{p}: already exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    secret = _passphrase(passphrase_file)
    encryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    try:  # O_CREAT|O_EXCL|O_NOFOLLOW: a key is never written over anything, nor through a link
        fsutil.write_new(key_path, pem, 0o600)
        fsutil.write_new(pub_path, SigningKey(private, key_path).public.minisign_text().encode(), 0o644)
    except FileExistsError as e:
        raise InputError(f"{out_dir / (e.filename or key_path.name)}: already exists; refusing to overwrite a key") from e
    return key_path, pub_path


def load_signing_key(path: Path, passphrase_file: Path | None = None) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read key ({e.strerror})") from e
    try:
        private = serialization.load_pem_private_key(data, password=_passphrase(passphrase_file))
    except TypeError as e:
        raise InputError(f"{path}: key is encrypted; set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV}") from e
    except ValueError as e:
        raise InputError(f"{path}: not a PKCS#8 PEM private key or wrong passphrase") from e
    if not isinstance(private, Ed25519PrivateKey):
        raise InputError(f"{path}: not an Ed25519 key")
    return SigningKey(private, path)


def load_public_key(path: Path) -> PublicKey:
    """Read a minisign-format public key file (the second line is the base64 key)."""
    try:
        # a public key often comes on the medium: a link or FIFO is refused at once (fsutil)
        lines = [ln.strip() for ln in fsutil.read_regular(path, 64 << 10).decode().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read public key") from e
    body = lines[-1] if lines else ""
    try:
        blob = base64.b64decode(body, validate=True)
    except ValueError as e:
        raise InputError(f"{path}: not a minisign public key") from e
    if len(blob) != 42 or blob[:2] != b"Ed":
        raise InputError(f"{path}: not a minisign Ed25519 public key")
    return PublicKey(blob[10:])
