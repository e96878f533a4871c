"""File-system writes that never leave a half-written file: write a temporary file beside the
target, fsync it, rename it over. One implementation for every module that writes state."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def link_or_copy(src: Path, dst: Path) -> None:
    """Publish ``src`` at ``dst`` atomically: a hard link when possible (no second copy of the
    bytes), a copy when the file system refuses."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o444)
        os.replace(tmp, dst)
    except BaseException:  # a full disk half-way through the copy: leave no temporary file behind
        tmp.unlink(missing_ok=True)
        raise
