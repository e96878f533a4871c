"""A stand-in for the Hugging Face Hub that the real ``huggingface_hub`` client (2.4) downloads from:
the external zone of ``gapsync demo``, and the Hub of the tests (with hostile modes).

    python -m gapsync.demo.hub_standin ROOT PORT [--log FILE] [--mode MODE] [--token T] [--page-size N]
                                 [--cdn-host HOST] [--many-count N] [--delay-ms MS]

Why: the Hub cannot be reached from every machine (and not from the test machines), and gapsync must be tested against the HTTP calls the real
client makes (and against a Hub that lies). Listens on 127.0.0.1 only; the test stops it by PID.

ON-DISK FORMAT (``tests/support/models.write_repo`` writes it)::

    ROOT/<org>/<name>/revisions/<40-hex commit>/<files...>   one directory per commit, plain files
    ROOT/<org>/<name>/refs.json    {"main": "<commit>", "v1.0": "<commit>"}  branch and tag names
    ROOT/<org>/<name>/tags.json    ["v1.0"]   optional: which names of refs.json are tags (others: branches)
    ROOT/<org>/<name>/card.json    optional cardData, e.g. {"license": "apache-2.0",
                                   "library_name": "sentence-transformers", "tags": [...]}

Repos are read from disk on every request (hashes are cached by path, size and mtime), so a test
may add repos or revisions while the server runs. A file is stored in LFS when (``is_lfs``) its
extension is in ``LFS_EXTENSIONS`` (.safetensors, .bin, .onnx, .pt, ...), or it is at least
``LFS_MIN_SIZE`` (10 MiB, the Hub's own limit for plain git), or it matches a ``filter=lfs`` line of
the revision's own ``.gitattributes``. As on the Hub, a LFS file's git blob is its *pointer file*
(``lfs_pointer``): the tree's ``oid`` and model info's ``blobId`` are the pointer's git sha1, the
``lfs.oid``/``lfs.sha256`` the sha256 of the content; a regular file's oid is the git blob sha1 of
its content (``git_blob_sha1``).

HTTP (what huggingface_hub 2.4 calls; ``{repo}`` is ``org/name``; a ``{rev}`` is a branch, a tag or
a commit, URL-quoted as one path segment, e.g. ``refs%2Fpr%2F1``):

    GET  /api/models/{repo}[/revision/{rev}][?blobs=true][&expand=..]  model info: id, sha, cardData,
         tags, library_name, siblings [{rfilename}] (with blobs=true also size, blobId, lfs{sha256,size,
         pointerSize}); expand=X returns only id/_id and the X fields, as the Hub does.
    GET  /api/models/{repo}/tree/{rev}[/{path}]?recursive=true&expand=false  a page of
         {type: file|directory, oid, size, path[, lfs{oid,size,pointerSize}]}; more than --page-size
         entries: ``Link: <absolute url with cursor=>; rel="next"``. expand=true adds lastCommit.
    POST /api/models/{repo}/paths-info/{rev}   form: paths=..&paths=..  -> the same entries.
    GET  /api/models/{repo}/refs               {branches, tags, converts[, pullRequests]}.
    HEAD|GET /{repo}/resolve/{rev}/{path}      regular file: 200 (206 with Range) with ETag "<git sha1>",
         X-Repo-Commit, Content-Length, Accept-Ranges. LFS file: 302 to
         ``http://CDN_HOST:PORT/lfs-cdn/{repo}/{sha256}?sig=..`` with ETag and X-Linked-Etag
         "<sha256>", X-Linked-Size, X-Repo-Commit (the client reads the metadata from the 302 itself
         and does not follow it for HEAD since the host differs). Never X-Xet-Hash.
    GET  /lfs-cdn/{repo}/{sha256}?sig=..        the "CDN" (another host *name*, same process): bytes
         with Range. Like a signed CDN URL it does not want Authorization (the client strips it for
         another host); with --token it checks ``sig`` instead (403 if wrong).
    DATASETS: the same API under ``/api/datasets/{repo}/...`` and files at ``/datasets/{repo}/resolve/...``,
         repos on disk under ROOT/datasets/<org>/<name> (the same format); the CDN path gets ``datasets/``.
    XET (``--xet``): every LFS file is Xet-backed, as the Hub announces one: the tree adds ``xetHash``;
         resolve's 302 adds ``X-Xet-Hash`` and ``Link: <.../api/{models|datasets}/{repo}/xet-read-token/{commit}>;
         rel="xet-auth"`` and points at ``/xet-bridge/...`` (bytes with Range, like the Hub's cas-bridge), and
         ``GET /api/.../xet-read-token/{rev}`` answers the X-Xet-Cas-Url/-Access-Token/-Token-Expiration
         headers. There is no CAS: a client with hf_xet installed fails on such a file unless
         ``HF_HUB_DISABLE_XET=1``, and then (as without hf_xet) downloads through the resolve URL.
    Errors: 404 with ``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound`` and
         X-Error-Message (EntryNotFound on resolve also carries X-Repo-Commit, as on the Hub).

CONTROL (test-only; no token needed):
    GET  /_control/health                                  200 "ok" (readiness probe)
    POST /_control/move?repo=ORG/NAME&ref=main&to=<commit> moves (or creates) a branch: rewrites
         refs.json; 404 if the repo or commit is unknown. For "the revision moved between resolve
         and create".

TOKEN: with ``--token T`` (or env FAKE_HUB_TOKEN) every Hub request needs ``Authorization: Bearer T``:
no header -> 401 with X-Error-Code RepoNotFound (what the Hub says for a private repo); a wrong
token -> 401 "Invalid credentials in Authorization header". The CDN and /_control are exempt (see above).

MODES:
    honest      everything as stored.
    wrong-sha   every LFS file's bytes, as the CDN serves them, differ (last byte flipped, same length)
                from the sha256 announced in the tree, model info and X-Linked-Etag.
    traversal   every revision also lists (tree, paths-info, siblings) and serves two small regular
                files named ``../evil.txt`` and ``sub/../../x``.
    many-files  every revision also claims MANY_COUNT (200,000) small regular files ``many/NNNNNN.txt``,
                generated on demand (never written); the tree pages through them lazily.

LOG: ``--log FILE``: one JSON line per request: time, method, path, host, auth (Authorization
present), range, status. ``--delay-ms``: sleep before each answer (latency for benchmarks).

This file is run as a script (stdlib only) and imported by ``tests/support/models.py`` for the
shared rules (``git_blob_sha1``, ``lfs_pointer``, ``is_lfs``, ``commit_id``).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote, unquote, urlsplit

HONEST = "honest"
WRONG_SHA = "wrong-sha"
TRAVERSAL = "traversal"
MANY_FILES = "many-files"
MODES = (HONEST, WRONG_SHA, TRAVERSAL, MANY_FILES)

LFS_EXTENSIONS = frozenset({
    ".safetensors", ".bin", ".onnx", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".pkl", ".pickle",
    ".joblib", ".npy", ".npz", ".gguf", ".tflite", ".ot", ".model", ".parquet", ".arrow", ".zip",
    ".tar", ".gz", ".7z", ".xz", ".zst", ".mlmodel", ".pb", ".keras",
})
LFS_MIN_SIZE = 10 * 1024 * 1024
TRAVERSAL_FILES = {"../evil.txt": b"evil: written outside the snapshot\n", "sub/../../x": b"x: escaped\n"}
MANY_COUNT = 200_000
DATE = "2024-01-01T00:00:00.000Z"
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


# --- shared rules (imported by tests/support/models.py) -------------------------------------------

def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob: sha1(b"blob <len>\\0" + data) — the Hub's oid/blobId/ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer_for(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file the Hub keeps in git for a LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_pointer(data: bytes) -> bytes:
    return lfs_pointer_for(hashlib.sha256(data).hexdigest(), len(data))


def gitattributes_lfs_patterns(text: str) -> list[str]:
    """The patterns of a .gitattributes that route files to LFS (``PATTERN ... filter=lfs ...``)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            out.append(parts[0])
    return out


def is_lfs(path: str, size: int, patterns: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether the fake Hub stores ``path`` in LFS (see the module docstring)."""
    if os.path.splitext(path)[1].lower() in LFS_EXTENSIONS or size >= LFS_MIN_SIZE:
        return True
    base = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in p else base, p.replace("**/", "*")) for p in patterns)


def commit_id(files: dict[str, bytes]) -> str:
    """A deterministic 40-hex commit for a set of files: sha1 over the sorted (path, git blob sha1) pairs."""
    h = hashlib.sha1(b"gapsync-fake-hub commit\n")
    for path in sorted(files):
        h.update(f"{path}\0{git_blob_sha1(files[path])}\n".encode())
    return h.hexdigest()


def safe_relpath(path: str) -> bool:
    """Relative, '/'-separated, no '..' or empty parts: what may be written under a revision directory."""
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and "\\" not in path and all(
        part not in ("", ".", "..") for part in path.split("/"))


def write_repo(root: Path, repo_id: str, revisions: dict[str, dict[str, bytes]], card: dict | None = None,
               tags: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
    """Write one commit per ref (``{ref: {path: bytes}}``) into ROOT/<org>/<name>; returns ``{ref: commit}``.

    Commits are ``commit_id(files)`` (deterministic: the same files give the same commit). Adds to an
    existing repo (refs.json is merged), so a test can add a revision later and move a branch to it.
    ``tags``: which ref names the refs API reports as tags (the others are branches).
    """
    if repo_id.count("/") != 1 or not all(safe_relpath(x) for x in repo_id.split("/")):
        raise ValueError(f"repo id must be org/name: {repo_id!r}")
    repo_dir = Path(root) / repo_id
    refs_file = repo_dir / "refs.json"
    refs: dict[str, str] = json.loads(refs_file.read_text()) if refs_file.is_file() else {}
    out: dict[str, str] = {}
    for ref, files in revisions.items():
        bad = [p for p in files if not safe_relpath(p)]
        if bad:
            raise ValueError(f"unsafe paths for a revision directory: {bad}")
        commit = commit_id(files)
        rev_dir = repo_dir / "revisions" / commit
        if not rev_dir.is_dir():
            tmp = repo_dir / "revisions" / f"{commit}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            for path, data in files.items():
                (tmp / path).parent.mkdir(parents=True, exist_ok=True)
                (tmp / path).write_bytes(data)
            tmp.mkdir(parents=True, exist_ok=True)  # an empty revision is still a revision
            os.replace(tmp, rev_dir)
        refs[ref] = commit
        out[ref] = commit
    refs_file.write_text(json.dumps(refs, indent=1, sort_keys=True))
    if tags:
        tags_file = repo_dir / "tags.json"
        old = json.loads(tags_file.read_text()) if tags_file.is_file() else []
        tags_file.write_text(json.dumps(sorted(set(old) | set(tags))))
    if card is not None:
        (repo_dir / "card.json").write_text(json.dumps(card, indent=1, sort_keys=True))
    return out


# --- the repository model ----------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One file (or directory) of a revision, as the tree API describes it."""

    path: str
    type: str  # "file" | "directory"
    size: int
    oid: str  # git blob sha1 (of the LFS pointer for LFS files); for directories a deterministic id
    sha256: str | None = None  # LFS only
    pointer_size: int | None = None  # LFS only
    disk: Path | None = None  # real files: where the bytes are
    data: bytes | None = None  # virtual files (hostile modes): the bytes

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None

    def tree_json(self, commit: str | None = None) -> dict:
        if self.type == "directory":
            doc: dict = {"type": "directory", "oid": self.oid, "size": 0, "path": self.path}
        else:
            doc = {"type": "file", "oid": self.oid, "size": self.size, "path": self.path}
            if self.lfs:
                doc["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        if commit:
            doc["lastCommit"] = {"id": commit, "title": "fake-hub commit", "date": DATE}
        return doc

    def sibling_json(self, blobs: bool) -> dict:
        doc: dict = {"rfilename": self.path}
        if blobs:
            doc.update(size=self.size, blobId=self.oid)
            if self.lfs:
                doc["lfs"] = {"sha256": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return doc


class HashCache:
    """(git sha1, sha256) of files on disk, cached by (path, size, mtime): repos are re-read per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, int], tuple[str, str]] = {}

    def get(self, p: Path) -> tuple[str, str, int]:
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            s1 = hashlib.sha1(b"blob %d\0" % st.st_size)
            s256 = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(CHUNK):
                    s1.update(chunk)
                    s256.update(chunk)
            hit = (s1.hexdigest(), s256.hexdigest())
            with self._lock:
                self._cache[key] = hit
        return hit[0], hit[1], st.st_size


def many_entry(i: int) -> Entry:
    data = b"many %06d\n" % i
    return Entry(f"many/{i:06d}.txt", "file", len(data), git_blob_sha1(data), data=data)


class Listing:
    """The entries of one revision in tree order: real ones, then the mode's virtual ones (lazily)."""

    def __init__(self, real: list[Entry], extra: list[Entry], many: int):
        self.real = real + extra
        self.many = many  # number of lazily generated many/NNNNNN.txt files (+1 directory entry)

    def __len__(self) -> int:
        return len(self.real) + (self.many + 1 if self.many else 0)

    def __getitem__(self, i: int) -> Entry:
        if i < len(self.real):
            return self.real[i]
        i -= len(self.real)
        if i == 0:
            return Entry("many", "directory", 0, hashlib.sha1(b"many-dir").hexdigest())
        return many_entry(i - 1)

    def path_at(self, i: int) -> tuple[str, str]:
        if i < len(self.real):
            return self.real[i].path, self.real[i].type
        i -= len(self.real)
        return ("many", "directory") if i == 0 else (f"many/{i - 1:06d}.txt", "file")

    def files(self) -> Iterator[Entry]:
        for i in range(len(self)):
            e = self[i]
            if e.type == "file":
                yield e

    def find(self, path: str) -> Entry | None:
        for e in self.real:
            if e.path == path:
                return e
        m = re.fullmatch(r"many/(\d{6})\.txt", path)
        if self.many and m and int(m[1]) < self.many:
            return many_entry(int(m[1]))
        if self.many and path == "many":
            return self[len(self.real)]
        return None


class Repo:
    def __init__(self, root: Path, repo_id: str, hashes: HashCache, mode: str, many: int):
        self.dir = root / repo_id
        self.id = repo_id
        self.hashes = hashes
        self.mode = mode
        self.many = many

    def exists(self) -> bool:
        return (self.dir / "refs.json").is_file() or (self.dir / "revisions").is_dir()

    def refs(self) -> dict[str, str]:
        p = self.dir / "refs.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def tags(self) -> set[str]:
        p = self.dir / "tags.json"
        return set(json.loads(p.read_text())) if p.is_file() else set()

    def card(self) -> dict | None:
        p = self.dir / "card.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def resolve(self, rev: str) -> str | None:
        refs = self.refs()
        if rev in refs:
            return refs[rev]
        if COMMIT_RE.match(rev) and (self.dir / "revisions" / rev).is_dir():
            return rev
        return None

    def commits(self) -> list[str]:
        d = self.dir / "revisions"
        return sorted(p.name for p in d.iterdir() if COMMIT_RE.match(p.name)) if d.is_dir() else []

    def listing(self, commit: str) -> Listing:
        base = self.dir / "revisions" / commit
        files: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for n in filenames:
                p = Path(dirpath) / n
                files.append((p.relative_to(base).as_posix(), p))
        ga = base / ".gitattributes"
        patterns = gitattributes_lfs_patterns(ga.read_text(errors="replace")) if ga.is_file() else []
        by_path: dict[str, Entry] = {}
        for rel, p in files:
            sha1, sha256, size = self.hashes.get(p)
            if is_lfs(rel, size, patterns):
                ptr = lfs_pointer_for(sha256, size)
                by_path[rel] = Entry(rel, "file", size, git_blob_sha1(ptr), sha256, len(ptr), disk=p)
            else:
                by_path[rel] = Entry(rel, "file", size, sha1, disk=p)
        # Directory entries (preorder: a directory just before its contents), ids derived from contents.
        dirs: dict[str, list[str]] = {}
        for rel in by_path:
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.setdefault("/".join(parts[:i]), [])
        for d in dirs:
            dirs[d] = sorted(e.oid for r, e in by_path.items() if r.startswith(d + "/"))
        ordered: list[Entry] = []
        seen: set[str] = set()
        for rel in sorted(by_path, key=lambda r: r.split("/")):
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    oid = hashlib.sha1(("tree\0" + d + "\0" + ",".join(dirs[d])).encode()).hexdigest()
                    ordered.append(Entry(d, "directory", 0, oid))
            ordered.append(by_path[rel])
        extra = []
        if self.mode == TRAVERSAL:
            extra = [Entry(p, "file", len(b), git_blob_sha1(b), data=b) for p, b in TRAVERSAL_FILES.items()]
        return Listing(ordered, extra, self.many if self.mode == MANY_FILES else 0)

    def lfs_file(self, sha256: str) -> Entry | None:
        """Any LFS file of any revision with this sha256 (what the CDN path names)."""
        for commit in self.commits():
            for e in self.listing(commit).real:
                if e.sha256 == sha256:
                    return e
        return None


# --- HTTP ----------------------------------------------------------------------------------------

def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``bytes=a-b`` / ``a-`` / ``-n`` -> (start, end inclusive); None: no (usable) range; "bad": 416."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (m[1] == "" and m[2] == ""):
        return None
    if m[1] == "":
        n = int(m[2])
        if n == 0:
            return "bad"
        return (max(size - n, 0), size - 1)
    start = int(m[1])
    end = int(m[2]) if m[2] else size - 1
    if start >= size or end < start:
        return "bad"
    return (start, min(end, size - 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("port", type=int)
    ap.add_argument("--log")
    ap.add_argument("--mode", choices=MODES, default=HONEST)
    ap.add_argument("--token", default=os.environ.get("FAKE_HUB_TOKEN") or None)
    ap.add_argument("--page-size", type=int, default=50)
    ap.add_argument("--cdn-host", default="localhost")
    ap.add_argument("--many-count", type=int, default=MANY_COUNT)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--xet", action="store_true", help="LFS files are Xet-backed, as the Hub announces them")
    a = ap.parse_args()
    root = Path(a.root).resolve()
    hashes = HashCache()
    log_lock = threading.Lock()
    refs_lock = threading.Lock()
    sig_key = (a.token or "fake-hub-public").encode()

    def sign(repo_id: str, sha256: str) -> str:
        return hmac.new(sig_key, f"{repo_id}/{sha256}".encode(), hashlib.sha256).hexdigest()[:32]

    def repo_of(org: str, name: str, rtype: str = "model") -> Repo | None:
        if not re.fullmatch(r"[\w.-]+", org) or not re.fullmatch(r"[\w.-]+", name) or ".." in (org + name):
            return None
        r = Repo(root / "datasets" if rtype == "dataset" else root, f"{org}/{name}", hashes, a.mode, a.many_count)
        return r if r.exists() else None

    def xet_hash(sha256: str) -> str:
        """A stand-in for the file's Xet hash (64 hex, like the Hub's; not Xet's real Merkle hash)."""
        return hashlib.sha256(b"fake-hub xet\0" + sha256.encode()).hexdigest()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length
        server_version = "fake-hub/1"
        rtype = "model"  # "dataset" for /api/datasets/... and /datasets/... (set per request)

        def _prefix(self) -> str:
            """Where this repo type's API and files live: "" for models, "datasets/" for datasets."""
            return "datasets/" if self.rtype == "dataset" else ""

        def log_message(self, fmt: str, *args: object) -> None:  # the JSON log is the record
            pass

        # -- plumbing --
        def _record(self, status: int) -> None:
            if a.log:
                line = json.dumps({"time": time.time(), "method": self.command, "path": self.path,
                                   "host": self.headers.get("Host"), "auth": "Authorization" in self.headers,
                                   "range": self.headers.get("Range"), "status": status})
                with log_lock, open(a.log, "a") as f:
                    f.write(line + "\n")

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  length: int | None = None) -> None:
            self._record(status)
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _json(self, doc: object, headers: dict[str, str] | None = None) -> None:
            self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
            h = {"Content-Type": "application/json", "X-Error-Message": message, **(headers or {})}
            if code:
                h["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), h)

        def _stream(self, size: int, read: Callable[[int, int], Iterator[bytes]], headers: dict[str, str]) -> None:
            """200 or 206 (Range) with the bytes from ``read(offset, length)``."""
            rng = parse_range(self.headers.get("Range"), size)
            headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **headers}
            if rng == "bad":
                self._send(416, b"", {**headers, "Content-Range": f"bytes */{size}"})
                return
            if rng is None:
                status, start, length = 200, 0, size
            else:
                assert isinstance(rng, tuple)
                status, start, length = 206, rng[0], rng[1] - rng[0] + 1
                headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
            self._send(status, b"", headers, length=length)
            if self.command == "HEAD":
                return
            try:
                for chunk in read(start, length):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _split(self) -> tuple[list[str], dict[str, list[str]]]:
            u = urlsplit(self.path)
            return u.path.split("/")[1:], parse_qs(u.query, keep_blank_values=True)

        def _authorized(self) -> bool:
            if not a.token:
                return True
            got = self.headers.get("Authorization")
            if got is None:
                self._error(401, "RepoNotFound", "Repository not found",
                            {"WWW-Authenticate": 'Bearer realm="fake-hub"'})
                return False
            if not hmac.compare_digest(got.encode(), f"Bearer {a.token}".encode()):
                self._error(401, None, "Invalid credentials in Authorization header")
                return False
            return True

        # -- dispatch --
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if a.delay_ms:
                time.sleep(a.delay_ms / 1000)
            parts, q = self._split()
            if parts[:1] == ["_control"]:
                if parts[1:] == ["health"]:
                    self._send(200, b"ok\n", {"Content-Type": "text/plain"})
                else:
                    self._error(404, None, "no such control endpoint")
                return
            self.rtype = "model"
            if parts[:1] == ["lfs-cdn"] or parts[:1] == ["xet-bridge"]:
                if parts[1:2] == ["datasets"]:
                    self.rtype, parts = "dataset", parts[1:]
                self._cdn(parts[1:], q)
                return
            if not self._authorized():
                return
            if parts[:2] == ["api", "datasets"] and len(parts) >= 4:
                self.rtype = "dataset"
                self._api(parts[2:], q)
            elif parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
                self.rtype = "dataset"
                self._resolve(parts[1:])
            elif parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._api(parts[2:], q)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve(parts)
            else:
                self._error(404, None, f"not found: {urlsplit(self.path).path}")

        def do_POST(self) -> None:
            parts, q = self._split()
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            if parts == ["_control", "move"]:
                self._move(q)
                return
            if not self._authorized():
                return
            self.rtype = "dataset" if parts[:2] == ["api", "datasets"] else "model"
            if parts[:2] in (["api", "models"], ["api", "datasets"]) and len(parts) >= 6 and parts[4] == "paths-info":
                form = parse_qs(body.decode(), keep_blank_values=True)
                self._paths_info(parts[2], parts[3], unquote("/".join(parts[5:])), form)
            else:
                self._error(404, None, f"not found: {urlsplit(self.path).path}")

        # -- Hub API --
        def _repo_rev(self, org: str, name: str, rev: str) -> tuple[Repo, str] | None:
            repo = repo_of(unquote(org), unquote(name), self.rtype)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            commit = repo.resolve(rev)
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return None
            return repo, commit

        def _api(self, p: list[str], q: dict[str, list[str]]) -> None:
            org, name, rest = p[0], p[1], p[2:]
            if not rest or rest[0] == "revision":
                rev = unquote("/".join(rest[1:])) if rest else "main"
                if rest and not rev:
                    self._error(404, None, "missing revision")
                    return
                got = self._repo_rev(org, name, rev)
                if got:
                    self._model_info(*got, q)
            elif rest[0] == "tree" and len(rest) >= 2:
                got = self._repo_rev(org, name, unquote(rest[1]))
                if got:
                    self._tree(*got, unquote("/".join(rest[2:])).strip("/"), q)
            elif rest[0] == "xet-read-token" and len(rest) >= 2 and a.xet:
                got = self._repo_rev(org, name, unquote(rest[1]))
                if got:  # what the Hub answers: where its CAS is and a short-lived token (no CAS here)
                    host = self.headers.get("Host") or f"127.0.0.1:{a.port}"
                    cas, exp = f"http://{host}/no-xet-cas", str(int(time.time()) + 3600)
                    self._json({"casUrl": cas, "accessToken": "fake-xet-token", "exp": int(exp)},
                               {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": "fake-xet-token", "X-Xet-Token-Expiration": exp})
            elif rest == ["refs"]:
                repo = repo_of(unquote(org), unquote(name), self.rtype)
                if repo is None:
                    self._error(404, "RepoNotFound", "Repository not found")
                    return
                self._refs(repo, q)
            else:
                self._error(404, None, f"not found: {urlsplit(self.path).path}")

        def _model_info(self, repo: Repo, commit: str, q: dict[str, list[str]]) -> None:
            blobs = (q.get("blobs") or ["false"])[0].lower() in ("1", "true")
            listing = repo.listing(commit)
            card = repo.card()
            tags: list[str] = []
            if card:
                tags += [t for t in card.get("tags", []) if isinstance(t, str)]
                if card.get("library_name"):
                    tags.append(card["library_name"])
                lic = card.get("license")
                if isinstance(lic, str):
                    tags.append(f"license:{lic}")
            exts = {os.path.splitext(e.path)[1] for e in listing.real if e.type == "file"}
            tags += [fmt for ext, fmt in ((".safetensors", "safetensors"), (".onnx", "onnx")) if ext in exts]
            tags = list(dict.fromkeys(tags))
            org = repo.id.split("/")[0]
            doc = {
                "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id, "modelId": repo.id,
                "author": org, "sha": commit, "lastModified": DATE, "createdAt": DATE, "private": False,
                "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                "library_name": (card or {}).get("library_name"), "pipeline_tag": (card or {}).get("pipeline_tag"),
                "tags": tags, "cardData": card,
                "siblings": [e.sibling_json(blobs) for e in listing.files()],
            }
            expand = q.get("expand") or q.get("expand[]")
            if expand:
                doc = {k: v for k, v in doc.items() if k in ("_id", "id") or k in expand}
            self._json(doc)

        def _tree(self, repo: Repo, commit: str, path: str, q: dict[str, list[str]]) -> None:
            recursive = (q.get("recursive") or ["false"])[0].lower() in ("1", "true")
            expand = (q.get("expand") or ["false"])[0].lower() in ("1", "true")
            listing = repo.listing(commit)
            if path:
                d = listing.find(path)
                if d is None or d.type != "directory":
                    self._error(404, "EntryNotFound", f"{path} does not exist on {commit}",
                                {"X-Repo-Commit": commit})
                    return
            prefix = path + "/" if path else ""

            try:
                cursor = int((q.get("cursor") or ["0"])[0])
            except ValueError:
                cursor = 0
            page: list[dict] = []
            i = max(cursor, 0)
            n = len(listing)
            while i < n and len(page) < a.page_size:
                path_i, _ = listing.path_at(i)  # cheap: the lazily generated entries are built only if wanted
                i += 1
                if path_i.startswith(prefix) and (recursive or "/" not in path_i[len(prefix):]):
                    page.append(self._entry_json(listing[i - 1], commit if expand else None))
            headers = {}
            if i < n:
                u = urlsplit(self.path)
                qs = "&".join(f"{k}={quote(v, safe='')}" for k, vs in q.items() if k != "cursor" for v in vs)
                host = self.headers.get("Host") or f"127.0.0.1:{a.port}"
                nxt = f"http://{host}{u.path}?{qs + '&' if qs else ''}cursor={i}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            self._json(page, headers)

        def _paths_info(self, org: str, name: str, rev: str, form: dict[str, list[str]]) -> None:
            got = self._repo_rev(org, name, rev)
            if not got:
                return
            repo, commit = got
            expand = (form.get("expand") or ["false"])[0].lower() in ("1", "true")
            listing = repo.listing(commit)
            out = []
            for p in form.get("paths", []):
                e = listing.find(p.strip("/"))
                if e is not None:
                    out.append(self._entry_json(e, commit if expand else None))
            self._json(out)

        def _entry_json(self, e: Entry, commit: str | None) -> dict:
            doc = e.tree_json(commit)
            if a.xet and e.lfs:  # the Hub lists a Xet-backed file with its LFS fields and its xetHash
                doc["xetHash"] = xet_hash(e.sha256 or "")
            return doc

        def _refs(self, repo: Repo, q: dict[str, list[str]]) -> None:
            tags = repo.tags()
            doc: dict = {"branches": [], "tags": [], "converts": []}
            for name, commit in sorted(repo.refs().items()):
                kind = "tags" if name in tags else "branches"
                ref = f"refs/{'tags' if kind == 'tags' else 'heads'}/{name}"
                doc[kind].append({"name": name, "ref": ref, "targetCommit": commit})
            if q.get("include_prs"):
                doc["pullRequests"] = []
            self._json(doc)

        # -- files --
        def _resolve(self, parts: list[str]) -> None:
            got = self._repo_rev(parts[0], parts[1], unquote(parts[3]))
            if not got:
                return
            repo, commit = got
            path = unquote("/".join(parts[4:]))
            e = repo.listing(commit).find(path)
            if e is None or e.type != "file":
                self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
                return
            if e.lfs:
                host = f"{a.cdn_host}:{a.port}"
                where = f"{self._prefix()}{repo.id}"
                cdn = "xet-bridge" if a.xet else "lfs-cdn"
                loc = f"http://{host}/{cdn}/{where}/{e.sha256}?sig={sign(where, e.sha256 or '')}"
                body = f"Found. Redirecting to {loc}".encode()
                headers = {
                    "Location": loc, "X-Repo-Commit": commit, "ETag": f'"{e.sha256}"',
                    "X-Linked-Etag": f'"{e.sha256}"', "X-Linked-Size": str(e.size),
                    "Content-Type": "text/plain; charset=utf-8",
                }
                if a.xet:  # a Xet-backed file, as the Hub announces it (huggingface_hub: parse_xet_file_data_from_response)
                    api_host = self.headers.get("Host") or f"127.0.0.1:{a.port}"
                    kind = "datasets" if self.rtype == "dataset" else "models"
                    headers["X-Xet-Hash"] = xet_hash(e.sha256 or "")
                    headers["Link"] = (f'<http://{api_host}/api/{kind}/{repo.id}/xet-read-token/{commit}>; rel="xet-auth", '
                                       f'<http://{api_host}/no-xet-cas/v1/reconstructions/{headers["X-Xet-Hash"]}>; '
                                       'rel="xet-reconstruction-info"')
                self._send(302, body, headers)
                return
            self._stream(e.size, self._reader(e, tamper=False), {"ETag": f'"{e.oid}"', "X-Repo-Commit": commit})

        def _cdn(self, parts: list[str], q: dict[str, list[str]]) -> None:
            if len(parts) != 3 or not SHA256_RE.match(parts[2]):
                self._error(404, None, "NoSuchKey")
                return
            repo = repo_of(unquote(parts[0]), unquote(parts[1]), self.rtype)
            sha256 = parts[2]
            if repo is None:
                self._error(404, None, "NoSuchKey")
                return
            if a.token and not hmac.compare_digest((q.get("sig") or [""])[0], sign(self._prefix() + repo.id, sha256)):
                self._error(403, None, "AccessDenied: bad signature")
                return
            e = repo.lfs_file(sha256)
            if e is None:
                self._error(404, None, "NoSuchKey")
                return
            name = e.path.rsplit("/", 1)[-1]
            self._stream(e.size, self._reader(e, tamper=a.mode == WRONG_SHA),
                         {"ETag": f'"{sha256}"', "Content-Disposition": f'attachment; filename="{name}"'})

        @staticmethod
        def _reader(e: Entry, tamper: bool) -> Callable[[int, int], Iterator[bytes]]:
            """Bytes of ``e`` from offset; ``tamper`` flips the last byte (same size, other sha256)."""
            def read(offset: int, length: int) -> Iterator[bytes]:
                end = offset + length
                if e.data is not None:
                    chunks: Iterator[bytes] = iter([e.data[offset:end]])
                else:
                    disk = e.disk
                    assert disk is not None

                    def from_disk() -> Iterator[bytes]:
                        with open(disk, "rb") as f:
                            f.seek(offset)
                            left = length
                            while left > 0:
                                chunk = f.read(min(CHUNK, left))
                                if not chunk:
                                    return
                                left -= len(chunk)
                                yield chunk
                    chunks = from_disk()
                pos = offset
                for chunk in chunks:
                    if tamper and pos <= e.size - 1 < pos + len(chunk):
                        k = e.size - 1 - pos
                        chunk = chunk[:k] + bytes([chunk[k] ^ 0xFF]) + chunk[k + 1:]
                    pos += len(chunk)
                    yield chunk
            return read

        # -- control --
        def _move(self, q: dict[str, list[str]]) -> None:
            repo_id, ref, to = ((q.get(k) or [""])[0] for k in ("repo", "ref", "to"))
            if repo_id.count("/") != 1 or not ref or not COMMIT_RE.match(to):
                self._error(400, None, "need repo=ORG/NAME, ref=NAME and to=<40-hex commit>")
                return
            org, name = repo_id.split("/")
            repo = repo_of(org, name, (q.get("type") or ["model"])[0])
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return
            if not (repo.dir / "revisions" / to).is_dir():
                self._error(404, "RevisionNotFound", f"no commit {to}")
                return
            with refs_lock:
                refs = repo.refs()
                before = refs.get(ref)
                refs[ref] = to
                tmp = repo.dir / f".refs.json.{os.getpid()}.tmp"
                tmp.write_text(json.dumps(refs, indent=1, sort_keys=True))
                os.replace(tmp, repo.dir / "refs.json")
            self._json({"repo": repo_id, "ref": ref, "from": before, "to": to})

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
