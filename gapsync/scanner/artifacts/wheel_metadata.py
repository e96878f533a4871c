"""Read a wheel's core metadata (``*.dist-info/METADATA``) without installing or importing it.

The bytes become the PEP 658 ``.metadata`` file next to the wheel in the mirror, so that pip
resolves without downloading whole wheels; they are carried as their own signed target.
"""

from __future__ import annotations

import zipfile
from email.parser import BytesHeaderParser
from pathlib import Path

from gapsync.errors import InputError

MAX_METADATA = 16 * 1024 * 1024


def read_core_metadata(wheel: Path, filename: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            candidates = [i for i in zf.infolist()
                          if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/METADATA")]
            if len(candidates) != 1:
                raise InputError(f"{filename}: expected one .dist-info/METADATA, found {len(candidates)}")
            info = candidates[0]
            if info.file_size > MAX_METADATA:
                raise InputError(f"{filename}: METADATA is {info.file_size} bytes (limit {MAX_METADATA})")
            with zf.open(info) as f:
                data = f.read(MAX_METADATA + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(f"{filename}: not a valid wheel ({e})") from e
    if len(data) > MAX_METADATA:
        raise InputError(f"{filename}: METADATA larger than {MAX_METADATA} bytes")
    return data


def requires_python(metadata: bytes) -> str | None:
    msg = BytesHeaderParser().parsebytes(metadata)
    value = msg.get("Requires-Python")
    return str(value).strip() if value else None


_stored: dict[tuple[str, str], tuple[str, int, bytes]] = {}


def core_metadata_blob(cache, wheel_sha256: str, filename: str) -> tuple[str, int, bytes]:
    """The wheel's METADATA stored in the cache as a blob: (digest, size, bytes), read from the
    zip once per process however many steps ask (scanning and targets both need it)."""
    key = (str(cache.root), wheel_sha256)
    known = _stored.get(key)
    if known is not None and cache.has(known[0]):
        return known
    if known is not None:  # the cache was emptied since (an in-process caller runs several creates)
        data = known[2]
    else:
        data = read_core_metadata(cache.path(wheel_sha256), filename)
    digest, size = cache.put_bytes(data, what=f"{filename}.metadata")
    _stored[key] = (digest, size, data)
    return _stored[key]
