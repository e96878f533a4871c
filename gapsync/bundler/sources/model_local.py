"""Models that are a local file or directory (``path:``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from gapsync.bundle.model_files import MAX_FILES, formats_of, synthetic_commit
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import Lock, LockedModel
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.bundler.spec import ModelSpec
from gapsync.errors import DigestMismatchError, InputError
from gapsync.hashing import sha256_file
from gapsync.names import safe_model_path


def resolve_path(spec: ModelSpec) -> LockedModel:
    root = Path(spec.location or "")
    paths: list[tuple[str, Path]] = []
    if root.is_file():
        paths.append((root.name, root))
    else:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for n in sorted(filenames):
                p = Path(dirpath) / n
                rel = p.relative_to(root).as_posix()
                if p.is_symlink() or not p.is_file():
                    raise InputError(f"{p}: links and special files are not carried; copy the file in")
                paths.append((rel, p))
                if len(paths) > MAX_FILES:
                    raise InputError(f"{root}: more than {MAX_FILES} files")
    if not paths:
        raise InputError(f"{root}: no files")
    files: list[dict[str, Any]] = []
    for rel, p in paths:
        digest, size = sha256_file(p)
        files.append({"path": safe_model_path(rel, str(root)), "sha256": digest, "size": size, "etag": digest,
                      "lfs": True, "local": str(p)})
    return LockedModel("path", spec.name, "main", synthetic_commit(files), files,
                       {"origin": str(root), "license": None, "formats": formats_of([f["path"] for f in files])})


def use_path_files(model: LockedModel, cache: BlobCache) -> None:
    """Point the cache at the local files (no second copy, issue 21): each must still be a
    regular file of the size ``resolve`` saw; its modification time is recorded now, and the
    bundle writer refuses the bundle if the size, that time or the sha256 of the bytes it wrote
    differ (a file changed between resolve and write)."""
    import stat

    for f in model.files:
        p = Path(f["local"])
        try:
            st = os.stat(p, follow_symlinks=False)
        except OSError as e:
            raise InputError(f"{p}: cannot read ({e.strerror})") from e
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{p}: links and special files are not carried; copy the file in")
        if f.get("size") is not None and st.st_size != f["size"]:
            raise DigestMismatchError(f"{p}: changed since gapsync resolve ({st.st_size} bytes, {f['size']} resolved)")
        cache.add_external(f["sha256"], p, st.st_size, st.st_mtime_ns)


class PathSource:
    """A local file or directory: hashed at resolve; at create the cache points at the files
    (no second copy) and the writer checks they did not change."""

    name: ClassVar[str] = "path"

    def resolve(self, entry: ModelSpec, ctx: ResolveContext) -> Lock:
        return Lock(ctx.lock.spec_digest, models=[resolve_path(entry)])

    def fetch(self, record: LockedModel, ctx: FetchContext) -> list[FetchItem]:
        use_path_files(record, ctx.cache)  # a module global: tests replace it to change a file in between
        return []
