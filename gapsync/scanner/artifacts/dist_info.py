"""Python packages installed in an OCI image, found by reading its layers as tar streams.

Why streams: layers are large, hostile until proven otherwise, and only a few kilobytes of them
matter (each ``*.dist-info/METADATA`` or ``*.egg-info/PKG-INFO``), so each layer is read once,
front to back, with ``tarfile`` in stream mode ("r|"), and nothing is written to disk. gzip, bzip2
and xz are tarfile's own; zstd layers (``tar+zstd``) go through ``zstandard``.

Why whiteouts: an image is its layers applied in order. A later layer that upgrades a package
deletes the old ``*.dist-info`` with a whiteout (``.wh.NAME``) or hides a whole directory
(``.wh..wh..opq``); reporting the deleted version would be a false positive, so the final view is
computed the way a container runtime computes it.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import BinaryIO, cast

METADATA_LIMIT = 1 << 20  # the headers come first; the long description after them is not needed
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT, OPAQUE = ".wh.", ".wh..wh..opq"


@dataclass(frozen=True)
class InstalledDist:
    """One installed distribution: what its metadata says, and where that metadata is."""

    name: str | None  # as written in the metadata (None when it has no Name)
    version: str
    layer: str  # the layer's name, as the subject names it
    path: str  # the metadata file inside the layer


class LayerError(Exception):
    """A layer could not be read as a tar stream (corrupt, truncated or not a tar)."""

    def __init__(self, layer: str, reason: str) -> None:
        super().__init__(f"{layer}: {reason}")
        self.layer, self.reason = layer, reason


def is_layer(path: Path, media_type: str | None) -> bool:
    """Is this subject file a filesystem layer? By media type when there is one (config blobs
    and manifests are not), else by sniffing for a compressed or plain tar."""
    if media_type:
        return "tar" in media_type
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return head[:2] == b"\x1f\x8b" or head[:4] == ZSTD_MAGIC or head[257:262] == b"ustar"


def is_metadata_path(path: str) -> bool:
    """``x.dist-info/METADATA``, ``x.egg-info/PKG-INFO``, ``x.egg/EGG-INFO/PKG-INFO``, or a
    single-file ``x.egg-info`` (what distutils installs wrote)."""
    parts = path.split("/")
    base, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
    if base == "METADATA":
        return parent.endswith(".dist-info")
    if base == "PKG-INFO":
        return parent.endswith(".egg-info") or (parent == "EGG-INFO" and len(parts) > 2 and parts[-3].endswith(".egg"))
    return base.endswith(".egg-info")


def parse_metadata(data: bytes) -> tuple[str | None, str]:
    """(Name, Version) from core metadata headers (RFC 822 style; only the header block)."""
    text = data.decode("utf-8", errors="replace")
    msg = HeaderParser().parsestr(text, headersonly=True)
    name, version = msg.get("Name"), msg.get("Version")
    return (str(name).strip() or None) if name else None, str(version).strip() if version else ""


def _clean(name: str) -> str | None:
    """A member name as a relative path inside the image ("./usr/x" and "/usr/x" are "usr/x")."""
    p = posixpath.normpath("/" + name).lstrip("/")
    return None if p in ("", ".") else p


def read_layer(stream: BinaryIO, layer: str) -> tuple[dict[str, InstalledDist], list[str], list[str]]:
    """Read one layer stream: (metadata path -> dist, deleted paths, opaque directories)."""
    dists: dict[str, InstalledDist] = {}
    deleted: list[str] = []
    opaque: list[str] = []
    head = stream.read(4)
    rest = cast(BinaryIO, _Prefixed(head, stream))  # read() is all that tarfile and zstandard call on it
    source: BinaryIO
    if head == ZSTD_MAGIC:
        import zstandard

        source = zstandard.ZstdDecompressor().stream_reader(rest, read_across_frames=True)
        mode = "r|"
    else:
        source, mode = rest, "r|*"
    with tarfile.open(fileobj=source, mode=mode) as tf:  # type: ignore[call-overload]
        for member in tf:
            path = _clean(member.name)
            if path is None:
                continue
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                opaque.append(parent)
            elif base.startswith(WHITEOUT):
                deleted.append(posixpath.join(parent, base[len(WHITEOUT):]))
            elif member.isreg() and is_metadata_path(path):
                f = tf.extractfile(member)
                data = f.read(METADATA_LIMIT) if f else b""
                name, version = parse_metadata(data)
                dists[path] = InstalledDist(name, version, layer, path)
    return dists, deleted, opaque


class _Prefixed:
    """A read-only stream that gives back the bytes already read for sniffing, then the rest."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head, self._stream = head, stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                out, self._head = self._head + self._stream.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._stream.read(n - len(out))
            return out
        return self._stream.read(n)

    def readable(self) -> bool:
        return True


def installed_dists(layers: Iterable[tuple[str, Path]]) -> tuple[list[InstalledDist], list[LayerError]]:
    """The packages present in the image made of ``layers`` (in order, bottom first), with
    whiteouts applied; and the layers that could not be read (their packages are unknown)."""
    import lzma
    import zlib

    from zstandard import ZstdError
    final: dict[str, InstalledDist] = {}
    errors: list[LayerError] = []
    for layer, path in layers:
        try:
            with open(path, "rb") as f:
                dists, deleted, opaque = read_layer(f, layer)
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ZstdError, ValueError) as e:
            errors.append(LayerError(layer, f"{type(e).__name__}: {e}"))
            continue
        for gone in deleted:
            for key in [k for k in final if k == gone or k.startswith(gone + "/")]:
                del final[key]
        for d in opaque:
            prefix = d + "/" if d else ""
            for key in [k for k in final if k.startswith(prefix)]:
                del final[key]
        final.update(dists)
    return list(final.values()), errors
