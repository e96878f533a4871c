"""The content-addressed cache: every blob once, under ``sha256/ab/<hex>``, shared by all runs.

A blob only ever appears under its name after its bytes were hashed and matched; partial
downloads live in ``partial/`` and are resumed, never trusted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from gapsync import fsutil
from gapsync.hashing import copy_verified, read_chunks, seal_mtime_ns
from gapsync.model import SHA256_RE

DEFAULT_CACHE_ENV = "GAPSYNC_CACHE"


def default_cache_dir() -> Path:
    if os.environ.get(DEFAULT_CACHE_ENV):
        return Path(os.environ[DEFAULT_CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "gapsync"


class ExternalPath(type(Path())):  # type: ignore[misc]
    """A file of the operator's (a path model) that stands for a blob in this run without being
    copied into the cache. ``expect``: its (size, mtime_ns) when the run looked at it; the bundle
    writer refuses it if either differs when it copies it, or if the bytes it wrote do not have
    the blob's sha256 (see ``BundleWriter._copy_member``)."""

    expect: tuple[int, int]


class BlobCache:
    def __init__(self, root: Path):
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "partial").mkdir(parents=True, exist_ok=True)
        self._external: dict[str, ExternalPath] = {}
        self._held: dict[str, fsutil.HeldPath] = {}

    def path(self, digest: str) -> Path:
        if not SHA256_RE.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        ext = self._external.get(digest) or self._held.get(digest)
        if ext is not None:
            return ext
        return self.root / "sha256" / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return digest in self._held or self.path(digest).is_file()

    def size(self, digest: str) -> int:
        """The blob's size in bytes (a held blob is not a file: see ``hold``)."""
        held = self._held.get(digest)
        return held.size if held is not None else self.path(digest).stat().st_size

    def hold(self, digest: str, where: fsutil.HeldPath) -> None:
        """For this run only, the blob ``digest`` is a range of the bundle being written and is
        not stored here (``bundle create --no-cache``): ``path(digest)`` names it, and only
        ``fsutil.open_blob`` reads it (any other reader fails: ``fsutil.HeldPath``)."""
        self._held[digest] = where

    def held(self) -> list[str]:
        return list(self._held)

    def keep(self, digest: str) -> None:
        """Store a held blob after all (the bundle cannot be written around its body: a blocked
        artifact, say): its bytes are read from the body and hashed again on their way in."""
        held = self._held.pop(digest)  # before put: its path is the cache's again
        with fsutil.open_blob(held) as f:
            self.put(read_chunks(f), what=str(held), sha256=digest, size=held.size)

    def add_external(self, digest: str, path: Path, size: int, mtime_ns: int) -> None:
        """For this run only, the blob ``digest`` is the operator's file ``path`` (no second
        copy of a local model): ``path(digest)`` names it, scanners read it, the bundle writer
        copies it and checks it again (``ExternalPath``). A blob already sealed in the cache is
        used from there instead."""
        if self.root.joinpath("sha256", digest[:2], digest).is_file():
            return
        ext = ExternalPath(path)
        ext.expect = (size, mtime_ns)
        self._external[digest] = ext

    def partial_path(self, key: str) -> Path:
        return self.root / "partial" / f"{key}.part"

    def put(self, chunks: Iterable[bytes], *, what: str, sha256: str | None, size: int | None = None) -> tuple[str, int]:
        """Store a stream, verified; returns (digest, size). Used for small derived blobs too."""
        with fsutil.Dir(self.root / "partial") as d:
            tmp, f = d.create_temp("put")  # O_CREAT|O_EXCL|O_NOFOLLOW, a fresh name
            try:
                with f:
                    digest, n = copy_verified(chunks, f, what=what, sha256=sha256, size=size)
                self.adopt(d.path / tmp, digest)
                return digest, n
            finally:
                d.unlink(tmp)

    def put_bytes(self, data: bytes, *, what: str) -> tuple[str, int]:
        return self.put([data], what=what, sha256=None, size=len(data))

    def adopt(self, verified_file: Path, digest: str) -> Path:
        """Move a file whose digest the caller has just verified into its place, sealed: read-only,
        and its modification time set to the seal of its digest (``hashing.seal_mtime_ns``), so
        that the bundle writer can tell it was not written to since and need not hash it again
        (any write sets the time to now; docs/threat-model.md)."""
        dst = self.path(digest)
        os.chmod(verified_file, 0o444)
        os.utime(verified_file, ns=(time.time_ns(), seal_mtime_ns(digest)), follow_symlinks=False)
        fsutil.move(verified_file, dst)  # a rename relative to both directories: never follows a link
        return dst
