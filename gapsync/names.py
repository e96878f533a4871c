"""The name rules both sides apply to upstream-controlled names: Python file and project names,
Hugging Face model names, revisions and file paths. The importer's targets refuse a bundle that
breaks them; the connected side checks the same rules at ``resolve`` and ``bundle create``, so the
DMZ never signs a name the air side will refuse. No I/O here.
"""

from __future__ import annotations

import re

from gapsync.errors import InputError

# -- Python (the static PEP 503 index) ---------------------------------------------------
SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!~-]{0,254}$")
PROJECT_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

# -- models (the Hugging Face cache layout) ------------------------------------------------
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
ETAG_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
REVISION_RE = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
_SEGMENT = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")


def safe_model_path(path: str, what: str) -> str:
    """A relative POSIX path with no '..', no absolute start, no control characters: it becomes
    a path under a snapshot directory on the air side."""
    parts = path.split("/")
    if (not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or not all(_SEGMENT.match(p) for p in parts) or len(path) > 1024):
        raise InputError(f"{what}: unsafe file name {path!r}")
    return path
