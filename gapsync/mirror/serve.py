"""``gapsync serve``: the mirror, read-only, over HTTP, as a WSGI application.

:class:`MirrorApp` is a plain WSGI callable that keeps no server state (only caches of the
mirror's own records, re-read when they change), so a site can run it under gunicorn or uWSGI
behind nginx (``gapsync.mirror.wsgi:application``); :func:`make_server` runs it under waitress,
the embedded default: HTTP/1.1 keep-alive, a real listen backlog, a bounded thread pool, bounded
buffers per connection, a deadline for a request's headers (slow clients cannot hold a thread or a
connection slot for long), and one log line for every request it refuses.

Routes (GET and HEAD; any other method is a 405, but for the Hub's read-only ``paths-info`` query,
which ``huggingface_hub`` sends as a POSTed form):

- ``/simple/`` answers PEP 691 JSON or PEP 503 HTML by the client's ``Accept`` header (pip and uv
  prefer JSON); a project name that is not a valid PEP 508 name is a 404, a valid one that is not
  normalized is redirected to its normalized form. ``/files/<name>`` serves the files.
  ``/targets/<channel>/<target-id>/simple/`` answers a channel's view for one target the same way
  (exactly that target's locked files; its pages link to ``/files/``).
- ``/v2/`` answers the read side of the OCI distribution API from the mirror's OCI layout
  (manifests by tag and digest, blobs with Range, tag lists), so ``skopeo copy
  docker://HOST:PORT/library/app:1.0`` and ``podman pull`` work. An image answers under its full
  name (``docker.io/library/app``) and, when unambiguous, under its repository alone. Manifests are
  answered only from the layout's manifest records (``index.json`` and the image indexes it
  references: digests known to be manifests, with their media types, at most 4 MiB as the
  distribution registry caps them); a digest that is not a known manifest (a layer, a config) is a
  404 ``MANIFEST_UNKNOWN`` without a byte of it being read.
- Models answer the part of the Hugging Face Hub API that ``huggingface_hub`` downloads with
  (``/api/models/{repo}[/revision/{rev}]``, ``/api/models/{repo}/tree/{rev}``,
  ``/{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``/
  ``X-Linked-Size``), one function per route (:data:`HUB_ROUTES`), so ``HF_ENDPOINT`` works;
  datasets the same under ``/api/datasets/`` and ``/datasets/`` (:data:`DATASET_ROUTES`).
- ``/conda/<channel>/<subdir>/<file>`` (and ``<channel>/channeldata.json``) serves the static conda
  channels under ``MIRROR/conda``; ``/charts/`` the static Helm chart repository.

Every file is opened relative to the mirror's directory descriptor without following any link on
the way (``openat2`` with ``RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH``; where that is missing, one
component at a time with ``O_NOFOLLOW``) and ``O_NONBLOCK``, and checked to be a regular file
before a byte is read (a planted symlink, FIFO, device or directory is a 404 and never blocks).
Small files are answered with one read; larger ones are streamed in bounded chunks
(``wsgi.file_wrapper`` where the server has one). Nothing
built from request bytes reaches a response header unless it passed a name rule first, and every
header is checked once more before it is sent. A ``Range`` is parsed without ever converting an
unbounded number; what cannot be satisfied is a 416, what is malformed a 400.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import logging
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from packaging.utils import canonicalize_name

from gapsync import __version__, fsutil
from gapsync.mirror.layout import CONDA_CHANNEL_RE, MirrorLayout
from gapsync.names import (
    COMMIT_RE,
    ETAG_RE,
    SAFE_FILENAME,
    SHA256_HEX,
    BadName,
    check_model_name,
    check_model_path,
    check_model_revision,
)
from gapsync.oci import ALL_MANIFEST_TYPES, DIGEST_RE, INDEX_TYPES, OCI_INDEX, REF_NAME

if TYPE_CHECKING:  # waitress itself is imported by make_server, when the embedded server runs
    from waitress.channel import HTTPChannel
    from waitress.server import BaseWSGIServer, MultiSocketServer

log = logging.getLogger("gapsync.serve")

SERVER_NAME = f"gapsync/{__version__}"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")

MAX_MANIFEST_BYTES = 4 << 20  # the distribution registry's cap on a manifest
MAX_RECORD_BYTES = 64 << 20  # oci/index.json, .gapsync/models/index.json, one model commit document
MAX_NESTED_INDEXES = 4  # image index -> image index -> ... -> manifest
CHUNK = 256 << 10  # bytes per read when streaming a file
SMALL_FILE = 256 << 10  # answered with one read (pages, .metadata, manifests); larger ones are streamed
COMMIT_DOC_CACHE = 32  # parsed model commit documents kept (content-addressed, so never stale)

# defaults of the embedded server (gapsync serve options)
DEFAULT_THREADS = 16
DEFAULT_BACKLOG = 2048
DEFAULT_CONNECTIONS = 1000
DEFAULT_IDLE_TIMEOUT = 60  # seconds a keep-alive connection may stay idle
DEFAULT_HEADER_TIMEOUT = 20  # seconds a client has to send a whole request head
MAX_REQUEST_HEAD = 64 << 10  # request line + headers (431 above)
MAX_REQUEST_BODY = 64 << 10  # read-only: no request needs a body (413 above)

PEP508_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")
# /targets/<channel>/<target-id>/simple/...: names as mirror/targets/pep503.py writes them
_TARGET_VIEW = re.compile(r"/targets/(?P<channel>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/(?P<target>cp3[0-9]{1,2}-[a-z0-9_]{1,64})"
                          r"(?P<rest>/simple(?:/.*)?)")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,8192}")
_SCRIPT_NAME = re.compile(r"(?:/[A-Za-z0-9._~-]+)*")
_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")


def negotiate(accept: str | None) -> str:
    """Pick JSON or HTML by q-value, as PEP 691 describes; HTML when nothing is said."""
    if not accept:
        return "text/html"
    best, best_q = "text/html", -1.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        mtype, q = fields[0].lower(), 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:][:8])
                except ValueError:
                    q = 0.0
        if mtype in (JSON_TYPE, "application/vnd.pypi.simple.latest+json"):
            cand = JSON_TYPE
        elif mtype in (*HTML_TYPES, "application/vnd.pypi.simple.latest+html", "*/*", "text/*"):
            cand = "application/vnd.pypi.simple.v1+html" if "vnd.pypi" in mtype else "text/html"
        else:
            continue
        if q > best_q:
            best, best_q = cand, q
    return best


class RangeError(Exception):
    """A ``Range`` header that cannot be answered: ``status`` is 416 (unsatisfiable, or several
    ranges, which this server does not answer as multipart) or 400 (malformed)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` of one byte range, or None for the whole file. Numbers are compared by
    their digits before any conversion, so a 5,000-digit position costs nothing."""
    if value is None or size == 0:
        return None
    if "," in value:
        raise RangeError(416, "several ranges in one request")
    m = _RANGE.fullmatch(value)
    if not m:
        raise RangeError(400, "malformed Range header")
    first, last = m.group(1).lstrip("0") or ("0" if m.group(1) else ""), m.group(2).lstrip("0") or ("0" if m.group(2) else "")
    if not first and not last:
        raise RangeError(400, "malformed Range header")
    digits = len(str(size))
    if not first:  # suffix: the last N bytes
        n = size if len(last) > digits else min(int(last), size)
        if n == 0:
            raise RangeError(416, "empty suffix range")
        return size - n, n
    if len(first) > digits or int(first) >= size:
        raise RangeError(416, "range starts after the end of the file")
    start = int(first)
    end = size - 1 if not last or len(last) > digits else min(int(last), size - 1)
    if end < start:
        raise RangeError(416, "range ends before it starts")
    return start, end - start + 1


# -- files under the mirror, never through a link ----------------------------------------------
class MirrorFile(io.FileIO):
    """A regular file of the mirror, open for reading; ``st`` is its ``fstat``."""

    st: os.stat_result


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_SYS_OPENAT2 = 437  # the same number on every Linux architecture (5.6+)
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _openat2_function() -> Callable[[int, str], int] | None:
    """Linux's openat2(2) with RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH: the kernel opens a whole
    relative path without following any link on the way, in one call (a request for a page
    costs one system call instead of one per path component). None where it is missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    how = _OpenHow(_FILE_FLAGS, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    how_p, how_size = ctypes.cast(ctypes.pointer(how), ctypes.c_void_p), ctypes.sizeof(how)

    def openat2(dirfd: int, rel: str) -> int:
        fd = syscall(_SYS_OPENAT2, dirfd, os.fsencode(rel), how_p, how_size)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), rel)
        return fd

    return openat2


class MirrorRoot:
    """The mirror directory, opened once per process; every file below it is opened relative to
    that descriptor, never through a link, and must be a regular file."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._openat2 = _openat2_function() if hasattr(os, "O_NOFOLLOW") and os.uname().sysname == "Linux" else None

    def _dirfd(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            with self._lock:
                if self._fd is None or self._pid != os.getpid():
                    self._fd, self._pid = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), os.getpid()
        return self._fd

    def open(self, parts: Iterable[str]) -> tuple[MirrorFile | None, str]:
        """Open MIRROR/part/part/... for reading: no component may be a link, and the file must be
        a regular file (checked on the open descriptor, opened ``O_NONBLOCK`` so a FIFO cannot
        block). Returns the file, or None and the reason."""
        parts = list(parts)
        if not parts or any(p in ("", ".", "..") or "/" in p or "\0" in p for p in parts):
            return None, "not a path under the mirror"
        try:
            root = self._dirfd()
        except OSError:
            return None, "mirror directory not found"
        try:
            fd = self._open_fd(root, parts)
        except fsutil.UnsafeFileError:
            return None, "not a regular file, refused"
        except OSError as e:
            if e.errno == errno.ENOSYS or (e.errno == errno.EPERM and self._openat2 is not None):
                self._openat2 = None  # an older kernel or a seccomp filter: walk the components instead
                return self.open(parts)
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
                return None, "a link on the way, refused"
            return None, "not found"
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None, "not a regular file, refused"
        f = MirrorFile(fd, "rb")
        f.st = st
        return f, ""

    def _open_fd(self, root: int, parts: list[str]) -> int:
        if self._openat2 is not None:
            return self._openat2(root, "/".join(parts))
        dfd = root
        try:
            for p in parts[:-1]:
                nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                if dfd != root:
                    os.close(dfd)
                dfd = nfd
            return fsutil.open_regular_fd(parts[-1], dir_fd=dfd)  # O_NOFOLLOW|O_NONBLOCK, then fstat
        finally:
            if dfd != root:
                os.close(dfd)


def _read_capped(f: MirrorFile, cap: int, what: str) -> bytes:
    size = f.st.st_size
    if size > cap:
        raise RecordError(f"{what}: {size} bytes, more than the {cap} this server reads")
    data = f.read(cap + 1)
    if len(data) > cap:
        raise RecordError(f"{what}: more than {cap} bytes")
    return data


class RecordError(Exception):
    """One of the mirror's own records (OCI index, model index, commit document) is unreadable:
    the request that needed it is refused with a 500 and one log line."""


class _FileRange:
    """A WSGI body streaming ``length`` bytes of ``f`` from ``start`` in bounded chunks."""

    def __init__(self, f: MirrorFile, start: int, length: int):
        self.f, self.start, self.length = f, start, length

    def __iter__(self) -> Iterator[bytes]:
        self.f.seek(self.start)
        left = self.length
        while left > 0:
            chunk = self.f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self.f.close()


class Response:
    """What a route answers; :meth:`MirrorApp.__call__` checks the headers and sends it."""

    __slots__ = ("status", "headers", "body", "file", "start", "length", "reason", "declared")

    def __init__(self, status: int, headers: list[tuple[str, str]] | None = None, body: bytes = b"", reason: str = ""):
        self.status, self.headers, self.body, self.reason = status, headers or [], body, reason
        self.file: MirrorFile | None = None
        self.start = self.length = 0
        self.declared: int | None = None  # Content-Length of a bodiless answer to a HEAD

    def content_length(self) -> int:
        if self.declared is not None:
            return self.declared
        return self.length if self.file is not None else len(self.body)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def text(status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> Response:
    body = f"{status} {HTTPStatus(status).phrase}\n".encode()
    return Response(status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])], body, reason)


def json_response(doc: Any, status: int = 200, headers: list[tuple[str, str]] | None = None, reason: str = "") -> Response:
    return Response(status, [("Content-Type", "application/json"), *(headers or [])], json.dumps(doc).encode(), reason)


def redirect(status: int, location: str) -> Response:
    return Response(status, [("Location", location)], b"")


def oci_error(status: int, code: str, message: str) -> Response:
    return json_response({"errors": [{"code": code, "message": message}]}, status,
                         [("Docker-Distribution-API-Version", "registry/2.0")], reason=code)


def hub_error(code: str, message: str) -> Response:
    """The Hub's 404: ``X-Error-Code`` tells huggingface_hub which error to raise. ``message``
    holds only names that passed a name rule."""
    return json_response({"error": message}, 404, [("X-Error-Code", code), ("X-Error-Message", message)], reason=code)


def file_response(environ: dict, f: MirrorFile, ctype: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """200 with the whole file or 206 with the one range asked for; 416/400 for a bad Range."""
    size = f.st.st_size
    try:
        rng = parse_range(environ.get("HTTP_RANGE"), size)
    except RangeError as e:
        f.close()
        return text(e.status, str(e), [("Content-Range", f"bytes */{size}")] if e.status == 416 else [])
    base = [("Content-Type", ctype), ("Accept-Ranges", "bytes"), ("Cache-Control", "max-age=60"), *(headers or [])]
    if rng is None:
        r = Response(200, base)
        r.start, r.length = 0, size
    else:
        r = Response(206, [*base, ("Content-Range", f"bytes {rng[0]}-{rng[0] + rng[1] - 1}/{size}")])
        r.start, r.length = rng
    r.file = f
    return r


class _Cached:
    """One record file of the mirror, parsed once and re-read when it is replaced (an import
    renames a new one into place: another inode)."""

    def __init__(self, root: MirrorRoot, parts: tuple[str, ...], parse: Callable[[bytes], Any]):
        self.root, self.parts, self.parse = root, parts, parse
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: Any = None

    def get(self) -> Any:
        """The parsed record, or None when there is none (yet)."""
        f, reason = self.root.open(self.parts)
        if f is None:
            if reason.endswith("refused"):
                raise RecordError(f"{'/'.join(self.parts)}: {reason}")
            return None
        with f:
            st = f.st
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                if key != self._key:
                    data = _read_capped(f, MAX_RECORD_BYTES, "/".join(self.parts))
                    self._value, self._key = self.parse(data), key
                return self._value


class OciRecords:
    """What the OCI layout says it holds: image names with their tags, and every digest known to
    be a manifest (the ``index.json`` entries and, below the image indexes among them, their
    child manifests), with its media type and size. Built from the layout alone."""

    def __init__(self, images: dict[str, dict[str, str]], manifests: dict[str, tuple[str, int]]):
        self.images = images  # name -> {tag: digest}
        self.manifests = manifests  # digest -> (media type, size)


class MirrorApp:
    """The WSGI application: ``MirrorApp(Path("/srv/mirror"))`` answers every route of ``gapsync
    serve`` for that mirror. Thread-safe; safe to run in several processes side by side."""

    def __init__(self, mirror: Path, access_log: bool = False):
        self.mirror = Path(mirror)
        self.layout = MirrorLayout(self.mirror)
        self.root = MirrorRoot(self.mirror)
        self.access_log = access_log
        rel = self.layout.relative  # the layout's paths as components, opened relative to the mirror's fd
        self._oci = _Cached(self.root, rel(self.layout.oci_index), self._parse_oci_index)
        self._models = _Cached(self.root, rel(self.layout.models_index), _parse_models_index)
        self._datasets = _Cached(self.root, rel(self.layout.models_index), _parse_datasets_index)
        self._oci_blobs, self._charts = rel(self.layout.oci_blobs_dir), rel(self.layout.charts_root)
        self._pypi, self._pypi_files, self._pypi_views = rel(self.layout.pypi), rel(self.layout.pypi_files), rel(self.layout.pypi_views)
        self._docs: OrderedDict[str, dict] = OrderedDict()
        self._docs_lock = threading.Lock()

    # -- WSGI --------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        try:
            resp = self.dispatch(environ, method)
        except RecordError as e:
            resp = text(500, f"mirror record unreadable: {e}")
        except Exception as e:  # one line, never a traceback to the client or the log
            resp = text(500, f"{type(e).__name__}: {e}")
        headers = [*resp.headers, ("Content-Length", str(resp.content_length()))]
        bad = next((f"{k}: {v!r}" for k, v in headers if not (_HEADER_NAME.fullmatch(k) and _HEADER_VALUE.fullmatch(v))), None)
        if bad:
            resp.close()
            resp = text(400, f"refused to send header {bad[:200]}")
            headers = [*resp.headers, ("Content-Length", str(len(resp.body)))]
        self._log(environ, method, resp)
        start_response(f"{resp.status} {HTTPStatus(resp.status).phrase}", headers)
        if method == "HEAD" or resp.file is None:
            resp.close()
            return [] if method == "HEAD" else [resp.body]
        f, resp.file = resp.file, None
        if resp.length <= SMALL_FILE:  # pages, .metadata, manifests: one read, one write
            with f:
                return [os.pread(f.fileno(), resp.length, resp.start)]
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None and resp.start + resp.length == f.st.st_size:
            f.seek(resp.start)  # the server sends from here to the end (no copy through Python)
            return wrapper(f, CHUNK)
        return _FileRange(f, resp.start, resp.length)

    def _log(self, environ: dict, method: str, resp: Response) -> None:
        if resp.status < 400 and not self.access_log:
            return
        target = quote(environ.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=-._~")  # never raw request bytes in the log
        line = f"{environ.get('REMOTE_ADDR', '-')} {quote(method[:16], safe='')} {target[:512]} {resp.status}"
        if resp.reason:
            line += f" ({resp.reason})"
        (log.error if resp.status >= 500 else log.info)(line)

    def dispatch(self, environ: dict, method: str) -> Response:
        if method not in ("GET", "HEAD") and not (method == "POST" and "/paths-info/" in environ.get("PATH_INFO", "")):
            return text(405, "read-only mirror: GET and HEAD only", [("Allow", "GET, HEAD")])
        raw = environ.get("PATH_INFO", "")
        try:
            path = raw.encode("latin-1").decode("utf-8")  # PEP 3333: the bytes as latin-1
        except UnicodeError:
            return text(400, "path is not UTF-8")
        if any(c < " " or c == "\x7f" for c in path) or "\\" in path:
            return text(400, "control character or backslash in the path")
        if any(p in (".", "..") for p in path.split("/")):
            return text(404, "dot segment in the path")
        if path in ("", "/"):
            return redirect(302, f"{self._prefix(environ)}/simple/")
        if path == "/simple" or path.startswith("/simple/"):
            return self.simple(environ, path)
        if path.startswith("/files/"):
            return self.files(environ, path[len("/files/"):])
        if path.startswith("/targets/"):  # a channel's view for one target (mirror/targets/pep503.py)
            m = _TARGET_VIEW.fullmatch(path)
            if not m:
                return text(404, "not a target view (/targets/<channel>/<target-id>/simple/)")
            return self.simple(environ, m["rest"], (*self._pypi_views, m["channel"], m["target"]),
                               f"/targets/{m['channel']}/{m['target']}")
        if path == "/v2" or path.startswith("/v2/"):
            return self.v2(environ, method, path)
        if path.startswith("/conda/"):
            return self.conda(environ, path[len("/conda/"):])
        if path.startswith("/charts/"):
            return self.charts(environ, path[len("/charts/"):])
        if method == "POST":  # the Hub's paths-info, a query sent as a form (nothing is written)
            m = _PATHS_INFO.fullmatch(path)
            return self.hub_paths_info(environ, m["kind"], m["repo"], m["rev"]) if m else text(405, "GET and HEAD only")
        if path.startswith(("/api/datasets/", "/datasets/")):
            return self.hub(environ, path, DATASET_ROUTES)
        if path.startswith("/api/models/") or "/resolve/" in path:
            return self.hub(environ, path)
        return text(404, "no such route")

    @staticmethod
    def _prefix(environ: dict) -> str:
        """Where the application is mounted (a reverse proxy's path prefix), for redirects."""
        sn = environ.get("SCRIPT_NAME", "")
        return sn if _SCRIPT_NAME.fullmatch(sn) else ""

    def _file(self, environ: dict, parts: tuple[str, ...], ctype: str,
              headers: list[tuple[str, str]] | None = None, missing: Callable[[str], Response] | None = None) -> Response:
        f, reason = self.root.open(parts)
        if f is None:
            if reason.endswith("refused"):
                log.warning("refused to serve %s: %s", "/".join(parts), reason)
            return missing(reason) if missing else text(404, reason)
        return file_response(environ, f, ctype, headers)

    # -- Helm: the static chart repository (mirror/targets/chart_repo.py) -----------------------
    def charts(self, environ: dict, name: str) -> Response:
        """``/charts/index.yaml`` and ``/charts/<name>-<version>.tgz``; nothing else."""
        if name == "index.yaml":
            return self._file(environ, (*self._charts, name), "application/x-yaml")
        if re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}-[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}\.tgz", name):
            return self._file(environ, (*self._charts, name), "application/gzip")
        return text(404, "no such chart file")

    # -- Python: PEP 503/691 index and files ----------------------------------------------------
    def simple(self, environ: dict, path: str, base: tuple[str, ...] | None = None, url: str = "") -> Response:
        """The union index (``/simple/``), or a target view (``base`` its tree, ``url`` its route)."""
        base = self._pypi if base is None else base
        prefix = self._prefix(environ) + url
        if path == "/simple":
            return redirect(301, f"{prefix}/simple/")
        ctype = negotiate(environ.get("HTTP_ACCEPT"))
        fname = "index.json" if ctype == JSON_TYPE else "index.html"
        vary = [("Vary", "Accept")]
        if path == "/simple/":
            return self._file(environ, (*base, "simple", fname), ctype, vary)
        name, slash, rest = path[len("/simple/"):].partition("/")
        if rest or not PEP508_NAME.fullmatch(name):
            return text(404, "not a project name")
        normalized = canonicalize_name(name)
        if name != normalized or not slash:
            return redirect(301, f"{prefix}/simple/{normalized}/")
        if "html" in ctype:
            ctype += "; charset=utf-8"
        return self._file(environ, (*base, "simple", normalized, fname), ctype, vary)

    def files(self, environ: dict, name: str) -> Response:
        if not SAFE_FILENAME.match(name) or ".." in name:
            return text(404, "not a file name of the index")
        ctype = "text/plain; charset=utf-8" if name.endswith(".metadata") else "application/octet-stream"
        return self._file(environ, (*self._pypi_files, name), ctype)

    # -- conda: static channels ----------------------------------------------------------------
    def conda(self, environ: dict, rest: str) -> Response:
        parts = rest.split("/")
        if len(parts) == 2 and parts[1] == "channeldata.json" and CONDA_CHANNEL_RE.fullmatch(parts[0]):
            return self._file(environ, self.layout.relative(self.layout.conda_channeldata(parts[0])), "application/json")
        if len(parts) != 3:
            return text(404, "not /conda/<channel>/<subdir>/<file>")
        try:
            path = self.layout.conda_file(*parts)
        except ValueError:
            return text(404, "not a conda channel file name")
        rel = tuple(path.relative_to(self.mirror).parts)
        ctype = "application/json" if parts[2].endswith(".json") else "application/octet-stream"
        return self._file(environ, rel, ctype)

    # -- OCI distribution API, read side --------------------------------------------------------
    def _parse_oci_index(self, data: bytes) -> OciRecords:
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise RecordError(f"oci/index.json: not JSON ({e})") from None
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise RecordError("oci/index.json: no list of manifests")
        full: dict[str, dict[str, str]] = {}
        manifests: dict[str, tuple[str, int]] = {}
        pending: list[tuple[str, int]] = []
        for m in entries:
            desc = _descriptor(m)
            if desc is None:
                continue
            digest, mtype, size = desc
            manifests[digest] = (mtype, size)
            if mtype in INDEX_TYPES:
                pending.append((digest, 1))
            ref = m.get("annotations", {}).get(REF_NAME, "") if isinstance(m.get("annotations"), dict) else ""
            if not isinstance(ref, str) or not ref:
                continue
            if "@" in ref:
                full.setdefault(ref.split("@", 1)[0], {})
            else:
                name, sep, tag = ref.rpartition(":")
                if sep and name:
                    full.setdefault(name, {})[tag] = digest
        while pending:  # the child manifests of image indexes, read from the layout, each <= 4 MiB
            digest, depth = pending.pop()
            for child in self._index_children(digest, manifests[digest][1]):
                cdigest, ctype, csize = child
                if cdigest not in manifests:
                    manifests[cdigest] = (ctype, csize)
                    if ctype in INDEX_TYPES and depth < MAX_NESTED_INDEXES:
                        pending.append((cdigest, depth + 1))
        images: dict[str, dict[str, str]] = dict(full)
        short: dict[str, list[str]] = {}
        for name in full:
            short.setdefault(name.split("/", 1)[1] if "/" in name else name, []).append(name)
        for alias, names in short.items():
            if len(names) == 1 and alias not in images:
                images[alias] = full[names[0]]
        return OciRecords(images, manifests)

    def _index_children(self, digest: str, size: int) -> list[tuple[str, str, int]]:
        f, reason = self.root.open((*self._oci_blobs, digest.split(":", 1)[1]))
        if f is None:
            log.warning("image index %s: %s", digest, reason)
            return []
        with f:
            data = f.read(size + 1)
        if len(data) != size or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            log.warning("image index %s: the layout's blob does not match its record, its manifests are not served", digest)
            return []
        try:
            doc = json.loads(data)
        except ValueError:
            return []
        children = doc.get("manifests") if isinstance(doc, dict) else None
        return [d for d in map(_descriptor, children) if d is not None] if isinstance(children, list) else []

    def v2(self, environ: dict, method: str, path: str) -> Response:
        api = [("Docker-Distribution-API-Version", "registry/2.0")]
        if path in ("/v2", "/v2/"):
            return json_response({}, headers=api)
        records = self._oci.get() or OciRecords({}, {})
        if path == "/v2/_catalog":
            return json_response({"repositories": sorted(records.images)}, headers=api)
        m = re.fullmatch(r"/v2/(.+)/tags/list", path)
        if m:
            if m.group(1) not in records.images:
                return oci_error(404, "NAME_UNKNOWN", "repository name not known to registry")
            return json_response({"name": m.group(1), "tags": sorted(records.images[m.group(1)])}, headers=api)
        m = re.fullmatch(r"/v2/(.+)/referrers/(sha256:[0-9a-f]{64})", path)
        if m and m.group(1) in records.images:  # the OCI 1.1 referrers API, from the layout's referrers tag
            tag = f"sha256-{m.group(2)[7:]}"
            if tag in records.images[m.group(1)]:
                return self.oci_manifest(environ, method, records, m.group(1), tag)
            empty = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
            return Response(200, [("Content-Type", OCI_INDEX), *api], empty)  # no body to a HEAD: __call__
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if not m or m.group(1) not in records.images:
            return oci_error(404, "NAME_UNKNOWN", "repository name not known to registry")
        name, kind, ref = m.groups()
        if kind == "blobs":
            return self.oci_blob(environ, ref)
        return self.oci_manifest(environ, method, records, name, ref)

    def oci_blob(self, environ: dict, ref: str) -> Response:
        dm = DIGEST_RE.fullmatch(ref)
        if not dm:
            return oci_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        return self._file(environ, (*self._oci_blobs, dm.group(1)), "application/octet-stream",
                          [("Docker-Content-Digest", ref), ("Docker-Distribution-API-Version", "registry/2.0")],
                          missing=lambda _r: oci_error(404, "BLOB_UNKNOWN", "blob unknown to registry"))

    def oci_manifest(self, environ: dict, method: str, records: OciRecords, name: str, ref: str) -> Response:
        """A manifest by tag or digest, only if the layout's records say that digest is a
        manifest; its bytes are read (at most 4 MiB) only for a GET."""
        if DIGEST_RE.fullmatch(ref):
            digest = ref
        elif ref in records.images[name]:
            digest = records.images[name][ref]
        else:
            return oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        known = records.manifests.get(digest)
        if known is None:
            return oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        mtype, size = known
        f, reason = self.root.open((*self._oci_blobs, digest.split(":", 1)[1]))
        if f is None:
            return oci_error(404, "MANIFEST_UNKNOWN", f"manifest unknown ({reason})")
        headers = [("Content-Type", mtype), ("Docker-Content-Digest", digest),
                   ("Docker-Distribution-API-Version", "registry/2.0")]
        with f:
            if f.st.st_size != size:
                return oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown (the layout's blob does not match its record)")
            if method == "HEAD":
                r = Response(200, headers)
                r.declared = size
                return r
            data = f.read(size)
        return Response(200, headers, data)

    # -- Hugging Face Hub API, read side ----------------------------------------------------------
    def _model_index(self) -> dict:
        return self._models.get() or {}

    def _commit_doc(self, digest: str) -> dict:
        with self._docs_lock:
            doc = self._docs.get(digest)
            if doc is not None:
                self._docs.move_to_end(digest)
                return doc
        try:
            path = self.layout.blob_path(digest)
        except ValueError:
            raise RecordError(f"model index: bad commit document digest {digest!r}") from None
        f, reason = self.root.open(path.relative_to(self.mirror).parts)
        if f is None:
            raise RecordError(f"model commit document {digest}: {reason}")
        with f:
            data = _read_capped(f, MAX_RECORD_BYTES, f"model commit document {digest}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise RecordError(f"model commit document {digest}: bytes do not match the digest")
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise RecordError(f"model commit document {digest}: not JSON ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
            raise RecordError(f"model commit document {digest}: no list of files")
        with self._docs_lock:
            self._docs[digest] = doc
            while len(self._docs) > COMMIT_DOC_CACHE:
                self._docs.popitem(last=False)
        return doc

    def model(self, repo: str, rev: str, index: dict | None = None) -> tuple[str, dict] | Response:
        """(commit, commit document) of ``repo`` at ``rev``, or the Hub's 404 to answer; ``index``:
        the datasets' (``_dataset_index``) instead of the models'."""
        try:
            check_model_name(repo)
            check_model_revision(rev)
        except BadName:
            return hub_error("RepoNotFound", "Repository not found")
        entry = (self._model_index() if index is None else index).get(repo)
        if not isinstance(entry, dict):
            return hub_error("RepoNotFound", f"Repository {repo} not found")
        refs, commits = entry.get("refs"), entry.get("commits")
        if not isinstance(refs, dict) or not isinstance(commits, dict):
            raise RecordError(f"model index: entry {repo} has no refs and commits")
        commit = refs.get(rev) or (rev if rev in commits else None)
        if not isinstance(commit, str) or not COMMIT_RE.match(commit) or not isinstance(commits.get(commit), str):
            return hub_error("RevisionNotFound", f"Revision {rev} not found")
        return commit, self._commit_doc(commits[commit])

    def hub(self, environ: dict, path: str, routes: list | None = None) -> Response:
        for pattern, route in (HUB_ROUTES if routes is None else routes):
            m = pattern.fullmatch(path)
            if m:
                return route(self, environ, **m.groupdict())
        return hub_error("EntryNotFound", "not found")

    def hub_model_info(self, environ: dict, repo: str, rev: str | None = None) -> Response:
        """``/api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: the model's info."""
        found = self.model(repo, rev or "main")
        if isinstance(found, Response):
            return found
        commit, doc = found
        meta_doc = doc.get("meta")
        meta = meta_doc if isinstance(meta_doc, dict) else {}
        return json_response({"id": repo, "modelId": repo, "sha": commit, "private": False, "disabled": False,
                              "gated": False, "tags": [f"license:{meta['license']}"] if meta.get("license") else [],
                              "library_name": meta.get("library"), "cardData": {"license": meta.get("license")},
                              "siblings": [{"rfilename": f["path"]} for f in _files(doc)]})

    def hub_model_tree(self, environ: dict, repo: str, rev: str, prefix: str | None = None) -> Response:
        """``/api/models/{repo}/tree/{rev}[/{path}]``: the files (all of them, one page)."""
        found = self.model(repo, rev)
        if isinstance(found, Response):
            return found
        _, doc = found
        prefix = (prefix or "").strip("/")
        entries = []
        for f in _files(doc):
            if prefix and not f["path"].startswith(prefix + "/"):
                continue
            entries.append(_tree_file(f))
        return json_response(entries)

    def hub_model_resolve(self, environ: dict, repo: str, rev: str, path: str, index: dict | None = None) -> Response:
        """``/{repo}/resolve/{rev}/{path}``: the file, with the headers huggingface_hub checks."""
        try:
            check_model_path(path)
        except BadName:
            return hub_error("EntryNotFound", "not found")
        found = self.model(repo, rev, index)
        if isinstance(found, Response):
            return found
        commit, doc = found
        f = next((f for f in _files(doc) if f["path"] == path), None)
        if f is None:
            return hub_error("EntryNotFound", f"{path} not found")
        headers = [("X-Repo-Commit", commit), ("ETag", f'"{f["etag"]}"'), ("Content-Disposition", "inline")]
        if f.get("lfs"):
            headers += [("X-Linked-Etag", f'"{f["sha256"]}"'), ("X-Linked-Size", str(f["size"]))]
        rel = self.layout.blob_path(f["sha256"]).relative_to(self.mirror).parts
        return self._file(environ, rel, "application/octet-stream", headers,
                          missing=lambda _r: hub_error("EntryNotFound", f"{path} not found"))


    # -- Hub dataset repos (datasets--org--name in the cache, "datasets" in the index) -----------
    def _dataset_index(self) -> dict:
        return self._datasets.get() or {}

    def hub_dataset_info(self, environ: dict, repo: str, rev: str | None = None) -> Response:
        """``/api/datasets/{repo}[/revision/{rev}]``: what ``HfApi.dataset_info`` and ``load_dataset`` read."""
        found = self.model(repo, rev or "main", self._dataset_index())
        if isinstance(found, Response):
            return found
        commit, doc = found
        meta_doc = doc.get("meta")
        meta = meta_doc if isinstance(meta_doc, dict) else {}
        lic = meta.get("license") if isinstance(meta.get("license"), str) else None
        return json_response({"id": repo, "author": repo.split("/")[0], "sha": commit, "private": False, "disabled": False,
                              "gated": False, "tags": [f"license:{lic}"] if lic else [], "cardData": {"license": lic},
                              "siblings": [{"rfilename": f["path"]} for f in _files(doc)]})

    def hub_dataset_tree(self, environ: dict, repo: str, rev: str, prefix: str | None = None) -> Response:
        """``/api/datasets/{repo}/tree/{rev}[/{path}]``: one level with its directories (``load_dataset``
        lists a directory at a time), or everything below with ``recursive=true``; one page."""
        found = self.model(repo, rev, self._dataset_index())
        if isinstance(found, Response):
            return found
        commit, doc = found
        recursive = "recursive=true" in environ.get("QUERY_STRING", "").lower()
        entries = _tree_level(doc, (prefix or "").strip("/"), recursive)
        if entries is None:
            return Response(404, [("Content-Type", "application/json"), ("X-Error-Code", "EntryNotFound"),
                                  ("X-Error-Message", f"{quote(prefix or '')} does not exist"), ("X-Repo-Commit", commit)],
                            json.dumps({"error": "Entry not found"}).encode(), reason="EntryNotFound")
        return json_response(entries)

    def hub_dataset_resolve(self, environ: dict, repo: str, rev: str, path: str) -> Response:
        """``/datasets/{repo}/resolve/{rev}/{path}``: as for models, from the datasets' index."""
        return self.hub_model_resolve(environ, repo, rev, path, self._dataset_index())

    def hub_paths_info(self, environ: dict, kind: str, repo: str, rev: str) -> Response:
        """``POST /api/{models|datasets}/{repo}/paths-info/{rev}`` (form ``paths=..&paths=..``): the
        entries of those paths (files and directories), as ``HfApi.get_paths_info`` reads them."""
        from urllib.parse import parse_qs

        try:
            n = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return text(400, "bad Content-Length")
        if n < 0 or n > MAX_REQUEST_BODY:
            return text(413, "request body too large")
        body = environ["wsgi.input"].read(n) if n else b""
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
        except (UnicodeError, ValueError):
            return text(400, "form is not UTF-8 or has too many fields")
        found = self.model(repo, rev, self._dataset_index() if kind == "datasets" else None)
        if isinstance(found, Response):
            return found
        _, doc = found
        everything = {e["path"]: e for e in _tree_level(doc, "", True) or []}
        return json_response([everything[p.strip("/")] for p in form.get("paths", []) if p.strip("/") in everything])


# Hub routes, tried in order (fullmatch on the decoded path); each maps to one method. Dataset
# routes (/api/datasets/..., /datasets/{repo}/resolve/...) are DATASET_ROUTES, below.
HUB_ROUTES: list[tuple[re.Pattern[str], Callable[..., Response]]] = [
    (re.compile(r"/api/models/(?P<repo>.+?)/revision/(?P<rev>[^/]+)"), MirrorApp.hub_model_info),
    (re.compile(r"/api/models/(?P<repo>.+?)/tree/(?P<rev>[^/]+)(?:/(?P<prefix>.*))?"), MirrorApp.hub_model_tree),
    (re.compile(r"/api/models/(?P<repo>[^/]+(?:/[^/]+)?)"), MirrorApp.hub_model_info),
    (re.compile(r"/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), MirrorApp.hub_model_resolve),
]
DATASET_ROUTES: list[tuple[re.Pattern[str], Callable[..., Response]]] = [
    (re.compile(r"/api/datasets/(?P<repo>.+?)/revision/(?P<rev>[^/]+)"), MirrorApp.hub_dataset_info),
    (re.compile(r"/api/datasets/(?P<repo>.+?)/tree/(?P<rev>[^/]+)(?:/(?P<prefix>.*))?"), MirrorApp.hub_dataset_tree),
    (re.compile(r"/api/datasets/(?P<repo>[^/]+(?:/[^/]+)?)"), MirrorApp.hub_dataset_info),
    (re.compile(r"/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), MirrorApp.hub_dataset_resolve),
]
_PATHS_INFO = re.compile(r"/api/(?P<kind>models|datasets)/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)")


def _descriptor(m: object) -> tuple[str, str, int] | None:
    """(digest, media type, size) of an OCI descriptor that names a manifest, else None."""
    if not isinstance(m, dict):
        return None
    digest, mtype, size = m.get("digest"), m.get("mediaType"), m.get("size")
    if not (isinstance(digest, str) and DIGEST_RE.fullmatch(digest) and mtype in ALL_MANIFEST_TYPES
            and type(size) is int and 0 < size <= MAX_MANIFEST_BYTES):
        return None
    return digest, mtype, size


def _parse_models_index(data: bytes) -> dict:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise RecordError(f".gapsync/models/index.json: not JSON ({e})") from None
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict):
        raise RecordError(".gapsync/models/index.json: no models map")
    return models


def _parse_datasets_index(data: bytes) -> dict:
    """The "datasets" map of the index (absent before the first dataset: empty)."""
    _parse_models_index(data)  # the same file: refuse it the same way
    datasets = json.loads(data).get("datasets", {})
    if not isinstance(datasets, dict):
        raise RecordError(".gapsync/models/index.json: datasets is not a map")
    return datasets


def _tree_file(f: dict) -> dict[str, Any]:
    """A file's tree entry as the Hub lists it (LFS files: the pointer's git id and the lfs fields)."""
    e: dict[str, Any] = {"type": "file", "path": f["path"], "size": f["size"]}
    if f.get("lfs"):
        ptr = _lfs_pointer(f["sha256"], f["size"])
        e["oid"] = _git_blob_sha1(ptr)
        e["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": len(ptr)}
    else:
        e["oid"] = f["etag"]
    return e


def _tree_level(doc: dict, prefix: str, recursive: bool) -> list[dict] | None:
    """The entries under directory ``prefix`` ("" the top): its files and directories, or everything
    below it when ``recursive``; None when ``prefix`` is no directory."""
    files = list(_files(doc))
    dirs = {"/".join(parts[:i]) for f in files for parts in [f["path"].split("/")] for i in range(1, len(parts))}
    if prefix and prefix not in dirs:
        return None
    base = prefix + "/" if prefix else ""

    def wanted(p: str) -> bool:
        return p.startswith(base) and (recursive or "/" not in p[len(base):])

    out: list[dict[str, Any]] = [{"type": "directory", "path": d, "size": 0,
                                  "oid": hashlib.sha1(f"tree {d}".encode(), usedforsecurity=False).hexdigest()}
                                 for d in dirs if wanted(d)]
    out += [_tree_file(f) for f in files if wanted(f["path"])]
    return sorted(out, key=lambda e: e["path"].split("/"))


def _files(doc: dict) -> Iterator[dict]:
    """The well-formed file entries of a commit document (as the importer checked them)."""
    for f in doc["files"]:
        if (isinstance(f, dict) and isinstance(f.get("path"), str) and type(f.get("size")) is int
                and isinstance(f.get("sha256"), str) and SHA256_HEX.match(f["sha256"])
                and isinstance(f.get("etag"), str) and ETAG_RE.match(f["etag"])):
            yield f


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


# -- the embedded server --------------------------------------------------------------------------
def _harden(listener: BaseWSGIServer, channel: type[HTTPChannel], header_timeout: int) -> None:
    """One listening socket: accepted connections get ``channel`` (the strict parser, the logged
    error task), and its maintenance also closes a connection whose request head has been
    arriving for longer than ``header_timeout`` (slowloris); waitress closes idle ones itself."""
    listener.channel_class = channel
    base_maintenance = listener.maintenance

    def maintenance(now: int) -> None:
        base_maintenance(now)
        # a dict of fd -> channel (waitress's stubs type it as one channel)
        channels: dict[int, HTTPChannel] = listener.active_channels  # type: ignore[assignment]
        for ch in list(channels.values()):
            req = getattr(ch, "request", None)
            started = getattr(ch, "head_started", None)
            if req is not None and not req.headers_finished and started is not None and now - started > header_timeout:
                log.info("%s - - closed: request head not complete after %d s", ch.addr[0] if ch.addr else "-", header_timeout)
                ch.will_close = True

    # an instance attribute over the method: waitress calls listener.maintenance(now) on its loop
    listener.maintenance = maintenance  # type: ignore[method-assign]


def make_server(mirror: Path, host: str, port: int, verbose: bool = False, *, threads: int = DEFAULT_THREADS,
                backlog: int = DEFAULT_BACKLOG, connections: int = DEFAULT_CONNECTIONS,
                idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
                header_timeout: int = DEFAULT_HEADER_TIMEOUT) -> BaseWSGIServer | MultiSocketServer:
    """:class:`MirrorApp` under waitress, bound and ready: ``.run()`` serves, ``.close()`` stops.

    Memory per connection is bounded by waitress's buffers: a request head of at most 64 KiB, no
    body, output held below 1 MiB in memory (a file is sent from its descriptor by
    ``wsgi.file_wrapper``, never copied whole). At most ``threads`` requests run at once;
    ``connections`` sockets are served, more wait in the kernel's ``backlog``."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser, ParsingError
    from waitress.server import BaseWSGIServer, create_server
    from waitress.task import ErrorTask

    class LoggedErrorTask(ErrorTask):
        """waitress's answer to a request it could not parse (400, 413, 431): one log line."""

        def execute(self):
            err = self.request.error
            log.info("%s - - %s (%s: %s)", self.channel.addr[0] if self.channel.addr else "-", err.code, err.reason,
                     str(err.body)[:200].replace("\r", " ").replace("\n", " "))
            super().execute()

    class StrictParser(HTTPRequestParser):
        """A request head with both Content-Length and Transfer-Encoding is refused (400, and the
        connection closed), not read by the chunked rule: a proxy in front that reads the length
        would see a different next request (request smuggling; RFC 9112 6.1 lets a server refuse)."""

        def parse_header(self, header_plus):
            names = {line.split(b":", 1)[0].strip().lower() for line in header_plus.split(b"\n")[1:] if b":" in line}
            if b"transfer-encoding" in names and b"content-length" in names:
                raise ParsingError("Content-Length and Transfer-Encoding together")
            return super().parse_header(header_plus)

    class Channel(HTTPChannel):
        error_task_class = LoggedErrorTask
        parser_class = StrictParser
        head_started: float | None = None

        def received(self, data):
            if data and self.request is None:
                self.head_started = time.time()  # a new request begins: its head has a deadline
            return super().received(data)

    app = MirrorApp(mirror, access_log=verbose)
    server = create_server(
        app, host=host, port=port, ident=SERVER_NAME, threads=threads, backlog=backlog,
        connection_limit=connections, channel_timeout=idle_timeout, cleanup_interval=max(1, min(5, header_timeout)),
        max_request_header_size=MAX_REQUEST_HEAD, max_request_body_size=MAX_REQUEST_BODY,
        outbuf_overflow=512 << 10, outbuf_high_watermark=1 << 20, inbuf_overflow=64 << 10,
        asyncore_use_poll=True, expose_tracebacks=False, clear_untrusted_proxy_headers=True)
    # A host that resolves to several addresses (``localhost`` as 127.0.0.1 and ::1, as a stock
    # Debian /etc/hosts has it) gets one listening server per address under a MultiSocketServer;
    # every one of them takes the strict channel and the head deadline.
    if isinstance(server, BaseWSGIServer):
        listeners = [server]
    else:  # its map holds fd -> dispatcher (waitress's stubs say socket)
        dispatchers: Iterable[object] = (server.map or {}).values()
        listeners = [d for d in dispatchers if isinstance(d, BaseWSGIServer)]
    for listener in listeners:
        _harden(listener, Channel, header_timeout)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" is normal under load
    return server
