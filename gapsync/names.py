"""The name rules both sides apply to upstream-controlled names: Python file and project names,
image names and tags, Hugging Face model names, revisions, commits and file paths.

One module, imported by both sides (it does no I/O and imports neither ``bundler`` nor
``mirror``): the importer's targets refuse a bundle that breaks a rule, and the connected side
checks the same rules at ``resolve`` and ``bundle create`` (and when it reads a lock), so the DMZ
never signs a name that every import would refuse. Each ``check_*`` returns the name or raises
:class:`BadName`, whose message is the reason only: the caller adds what it was checking (the
upstream on the connected side, the bundle target on the air side) and picks the error class.

Every pattern is anchored with ``\\Z`` (``$`` would accept a trailing newline).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gapsync.errors import InputError

# -- Python (the static PEP 503 index) ---------------------------------------------------
SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!~-]{0,254}\Z")
PROJECT_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")

# -- images (the OCI layout's ref names; the same grammar as gapsync.oci) ------------------
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
REGISTRY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?\Z|^\[[0-9a-fA-F:.]{2,45}\](?::[0-9]{1,5})?\Z")

# -- models (the Hugging Face cache layout) ------------------------------------------------
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?\Z")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}\Z")
ETAG_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
REVISION_RE = re.compile(r"^[A-Za-z0-9._/-]{1,200}\Z")
_SEGMENT = re.compile(r"^[^\x00-\x1f/\\]{1,255}\Z")
MAX_MODEL_PATH = 1024
NAME_MAX_BYTES = 255  # one path segment, as the file systems count it


class BadName(ValueError):
    """An upstream-controlled name breaks a rule; the message is the reason."""


def check_python_project(name: object) -> str:
    if not isinstance(name, str) or not PROJECT_RE.match(name):
        raise BadName(f"project name {name!r} is not a normalized PEP 503 name")
    return name


def check_python_filename(fn: object) -> str:
    """A wheel/sdist file name the static index publishes as a file of its own: ASCII letters,
    digits and ``._+!~-``, no '..' (an index may offer ``é`` or ``/`` in a name; pip may too)."""
    if not isinstance(fn, str) or not SAFE_FILENAME.match(fn) or ".." in fn:
        raise BadName(f"file name {fn!r} is not one the mirror publishes (ASCII letters, digits and ._+!~- only)")
    return fn


def check_sha256(value: object) -> str:
    if not isinstance(value, str) or not SHA256_HEX.match(value):
        raise BadName(f"sha256 {value!r} is not 64 lower-case hex digits")
    return value


def check_image_name(name: object) -> str:
    """``registry/repository`` as the layout's ref names carry it."""
    registry, _, repo = str(name).partition("/") if isinstance(name, str) else ("", "", "")
    if not registry or not REGISTRY_RE.match(registry) or not REPOSITORY_RE.match(repo):
        raise BadName(f"image name {name!r} is not registry/repository (lower-case letters, digits, separators)")
    return str(name)


def check_image_tag(tag: object) -> str:
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise BadName(f"image tag {tag!r} is not a valid tag (letters, digits, _.-, at most 128)")
    return tag


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise BadName(f"model name {name!r} is not org/name (letters, digits, ._-)")
    return name


def check_model_revision(rev: object) -> str:
    if not isinstance(rev, str) or not REVISION_RE.match(rev) or ".." in rev or rev.startswith("/") or rev.endswith("/") \
            or "//" in rev:
        raise BadName(f"revision {rev!r} is not a branch, tag or commit name the cache can hold")
    return rev


def check_model_commit(commit: object) -> str:
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise BadName(f"commit {commit!r} is not 40 lower-case hex digits")
    return commit


def check_model_path(path: object) -> str:
    """A relative POSIX path with no '..', no absolute start, no control characters: it becomes
    a path under a snapshot directory on the air side."""
    if not isinstance(path, str):
        raise BadName(f"file name {path!r} is not a string")
    parts = path.split("/")
    if (not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or not all(_SEGMENT.match(p) and _fits_a_file_system(p) for p in parts) or len(path) > MAX_MODEL_PATH):
        raise BadName(f"unsafe file name {path!r}")
    return path


def _fits_a_file_system(segment: str) -> bool:
    """A name the air side can create: UTF-8 (a lone surrogate from JSON is not) of at most 255
    bytes (NAME_MAX counts bytes, not characters: 200 'é' are 400 bytes and fail at publish)."""
    try:
        return len(segment.encode("utf-8")) <= NAME_MAX_BYTES
    except UnicodeEncodeError:
        return False


def check_model_tree(paths: Iterable[str]) -> None:
    """The files of one snapshot form a tree: no path is both a file and a directory of another
    (``a`` and ``a/b``), and no path is listed twice. A listing that breaks this cannot be laid
    out on any file system; it is refused before anything is written."""
    seen: set[str] = set()
    dirs: set[str] = set()
    for p in paths:
        if p in seen:
            raise BadName(f"file {p!r} is listed twice")
        seen.add(p)
        parts = p.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    clash = sorted(seen & dirs)
    if clash:
        raise BadName(f"{clash[0]!r} is both a file and a directory (e.g. {clash[0]!r} and {clash[0] + '/…'!r})")


def safe_model_path(path: str, what: str, error: type[Exception] = InputError) -> str:
    """:func:`check_model_path`, raising ``error`` with ``what`` in front (the connected side's
    sources use InputError; the importer passes its own)."""
    try:
        return check_model_path(path)
    except BadName as e:
        raise error(f"{what}: {e}") from None


def check_model(name: object, revision: object, commit: object, paths: Iterable[object]) -> None:
    """Everything the air side's Hugging Face cache checks about one model revision."""
    check_model_name(name)
    check_model_revision(revision)
    check_model_commit(commit)
    paths = [check_model_path(p) for p in paths]
    check_model_tree(paths)  # type: ignore[arg-type]
