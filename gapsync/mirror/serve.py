"""``gapsync serve``: the mirror, read-only, over HTTP.

``/simple/`` answers PEP 691 JSON or PEP 503 HTML by the client's ``Accept`` header (pip and uv
prefer JSON), ``/files/`` serves the files, and ``/v2/`` answers the read side of the OCI
distribution API from the mirror's OCI layout (manifests by tag and digest, blobs with Range,
tag lists), so ``skopeo copy docker://HOST:PORT/library/app:1.0`` and ``podman pull`` work. An
image answers under its full name (``docker.io/library/app``) and, when unambiguous, under its
repository alone (``library/app``). Models answer the part of the Hugging Face Hub API that
``huggingface_hub`` uses to download (``/api/models/{repo}[/revision/{rev}]``,
``/api/models/{repo}/tree/{rev}``, ``/{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``,
``ETag``, ``X-Linked-Etag``/``X-Linked-Size``), so ``HF_ENDPOINT=http://HOST:PORT`` works on
machines without a copy of the cache. GET and HEAD only; anything else is a 404.
"""

from __future__ import annotations

import json
import os
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name

from gapsync import __version__
from gapsync.oci import DIGEST_RE, INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, REF_NAME

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")


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
                    q = float(f[2:])
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


class MirrorHandler(BaseHTTPRequestHandler):
    server_version = f"gapsync/{__version__}"
    root: Path  # MIRROR/pypi, set by make_server
    oci_root: Path  # MIRROR/oci
    meta_root: Path  # MIRROR/.gapsync (model index and verified blobs, never served as files)

    def log_message(self, fmt, *args):  # quiet unless asked
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)

    def do_HEAD(self):
        self._handle(head=True)

    def do_GET(self):
        self._handle(head=False)

    def _send_file(self, path: Path, ctype: str, head: bool, extra: dict[str, str] | None = None) -> None:
        try:
            f = path.open("rb")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            start, end = 0, size - 1
            rng = self.headers.get("Range")
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
            if m and size:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start > end:
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(end - start + 1 if size else 0))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Cache-Control", "max-age=60")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head and size:
                f.seek(start)
                left = end - start + 1
                while left > 0:
                    chunk = f.read(min(1 << 20, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def _handle(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if "\0" in path or "/../" in f"{path}/" or "\\" in path:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        if path in ("/", ""):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/simple/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/simple"):
            return self._simple(path, head)
        if path == "/v2" or path.startswith("/v2/"):
            return self._v2(path, head)
        if path.startswith("/api/models/") or "/resolve/" in path:
            return self._hub(path, head)
        m = re.match(r"^/files/([^/]+)$", path)
        if m and not m.group(1).startswith("."):
            name = m.group(1)
            ctype = "application/octet-stream" if not name.endswith(".metadata") else "text/plain; charset=utf-8"
            return self._send_file(self.root / "files" / name, ctype, head)
        self.send_error(HTTPStatus.NOT_FOUND)

    def _simple(self, path: str, head: bool) -> None:
        ctype = negotiate(self.headers.get("Accept"))
        fname = "index.json" if ctype == JSON_TYPE else "index.html"
        if path in ("/simple", "/simple/"):
            if path == "/simple":
                return self._redirect("/simple/")
            return self._send_file(self.root / "simple" / fname, ctype, head)
        m = re.match(r"^/simple/([^/]+)/?$", path)
        if not m:
            return self.send_error(HTTPStatus.NOT_FOUND)
        normalized = canonicalize_name(m.group(1))
        if m.group(1) != normalized or not path.endswith("/"):
            return self._redirect(f"/simple/{normalized}/")
        self._send_file(self.root / "simple" / normalized / fname, ctype + ("; charset=utf-8" if "html" in ctype else ""), head)

    # -- OCI distribution API, read side ---------------------------------------------------
    def _oci_error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _images(self) -> dict[str, dict[str, dict]]:
        """name -> tag -> index entry, with repository-only aliases when unambiguous."""
        try:
            index = json.loads((self.oci_root / "index.json").read_text())
        except (OSError, ValueError):
            return {}
        full: dict[str, dict[str, dict]] = {}
        for m in index.get("manifests", []):
            ref = m.get("annotations", {}).get(REF_NAME, "")
            name, sep, tag = ref.rpartition(":") if "@" not in ref else (ref.split("@")[0], "@", m["digest"])
            if sep:
                full.setdefault(name, {})[tag] = m
        out = dict(full)
        short: dict[str, list[str]] = {}
        for name in full:
            short.setdefault(name.split("/", 1)[1] if "/" in name else name, []).append(name)
        for alias, names in short.items():
            if len(names) == 1 and alias not in out:
                out[alias] = full[names[0]]
        return out

    def _v2(self, path: str, head: bool) -> None:
        if path in ("/v2", "/v2/"):
            body = b"{}"
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return
        images = self._images()
        if path == "/v2/_catalog":
            return self._json({"repositories": sorted(images)}, head)
        m = re.fullmatch(r"/v2/(.+)/tags/list", path)
        if m:
            if m.group(1) not in images:
                return self._oci_error(404, "NAME_UNKNOWN", "repository name not known to registry")
            return self._json({"name": m.group(1), "tags": sorted(images[m.group(1)])}, head)
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
        if not m or m.group(1) not in images:
            return self._oci_error(404, "NAME_UNKNOWN", "repository name not known to registry")
        name, kind, ref = m.groups()
        if kind == "blobs":
            if not DIGEST_RE.match(ref):
                return self._oci_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            blob = self.oci_root / "blobs" / "sha256" / ref.split(":", 1)[1]
            if not blob.is_file():
                return self._oci_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            return self._send_file(blob, "application/octet-stream", head, {"Docker-Content-Digest": ref})
        if DIGEST_RE.match(ref):
            digest = ref
        elif ref in images[name]:
            digest = images[name][ref]["digest"]
        else:
            return self._oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        blob = self.oci_root / "blobs" / "sha256" / digest.split(":", 1)[1]
        try:
            doc = json.loads(blob.read_bytes())
        except (OSError, ValueError):
            return self._oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        if not isinstance(doc, dict) or not ("manifests" in doc or "layers" in doc):
            return self._oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        media_type = doc.get("mediaType") or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
        if media_type not in (*INDEX_TYPES, OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"):
            return self._oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        self._send_file(blob, media_type, head, {"Docker-Content-Digest": digest,
                                                 "Docker-Distribution-API-Version": "registry/2.0"})

    # -- Hugging Face Hub API, read side --------------------------------------------------
    def _hub_error(self, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(HTTPStatus.NOT_FOUND)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _model(self, repo: str, rev: str) -> tuple[str, dict] | None:
        try:
            index = json.loads((self.meta_root / "models" / "index.json").read_text())["models"]
        except (OSError, ValueError, KeyError):
            return None
        entry = index.get(repo)
        if entry is None:
            self._hub_error("RepoNotFound", f"Repository {repo} not found")
            return None
        commit = entry["refs"].get(rev) or (rev if rev in entry["commits"] else None)
        if commit is None:
            self._hub_error("RevisionNotFound", f"Revision {rev} not found")
            return None
        digest = entry["commits"][commit]
        blob = self.meta_root / "blobs" / "sha256" / digest[:2] / digest
        return commit, json.loads(blob.read_bytes())

    def _hub(self, path: str, head: bool) -> None:
        from gapsync.bundler.sources.model_files import git_blob_sha1, lfs_pointer

        m = (re.fullmatch(r"/api/models/(.+?)/revision/([^/]+)", path) or re.fullmatch(r"/api/models/(.+?)/tree/([^/]+)(?:/.*)?", path)
             or re.fullmatch(r"/api/models/([^/]+(?:/[^/]+)?)", path))
        if m and path.startswith("/api/models/"):
            repo, rev = m.group(1), (m.group(2) if m.lastindex and m.lastindex >= 2 else "main")
            found = self._model(repo, rev)
            if found is None:
                return None  # _model answered the 404
            commit, doc = found
            if "/tree/" in path:
                prefix = path.split("/tree/", 1)[1].partition("/")[2].strip("/")
                entries = []
                for f in doc["files"]:
                    if prefix and not f["path"].startswith(prefix + "/"):
                        continue
                    e = {"type": "file", "path": f["path"], "size": f["size"]}
                    if f.get("lfs"):
                        ptr = lfs_pointer(f["sha256"], f["size"])
                        e["oid"] = git_blob_sha1(ptr)
                        e["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": len(ptr)}
                    else:
                        e["oid"] = f["etag"]
                    entries.append(e)
                return self._json(entries, head)  # type: ignore[arg-type]
            meta = doc.get("meta", {})
            return self._json({"id": repo, "modelId": repo, "sha": commit, "private": False, "disabled": False,
                               "gated": False, "tags": [f"license:{meta['license']}"] if meta.get("license") else [],
                               "library_name": meta.get("library"), "cardData": {"license": meta.get("license")},
                               "siblings": [{"rfilename": f["path"]} for f in doc["files"]]}, head)
        m = re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path)
        if not m:
            return self._hub_error("EntryNotFound", "not found")
        repo, rev, fpath = m.groups()
        found = self._model(repo, rev)
        if found is None:
            return
        commit, doc = found
        f = next((f for f in doc["files"] if f["path"] == fpath), None)
        if f is None:
            return self._hub_error("EntryNotFound", f"{fpath} not found")
        blob = self.meta_root / "blobs" / "sha256" / f["sha256"][:2] / f["sha256"]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{f["etag"]}"', "Content-Disposition": "inline"}
        if f.get("lfs"):
            headers["X-Linked-Etag"] = f'"{f["sha256"]}"'
            headers["X-Linked-Size"] = str(f["size"])
        self._send_file(blob, "application/octet-stream", head, headers)

    def _json(self, doc: dict, head: bool) -> None:
        body = json.dumps(doc).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def make_server(mirror: Path, host: str, port: int, verbose: bool = False) -> ThreadingHTTPServer:
    handler = type("BoundMirrorHandler", (MirrorHandler,), {"root": mirror / "pypi", "oci_root": mirror / "oci",
                                                          "meta_root": mirror / ".gapsync"})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.verbose = verbose  # type: ignore[attr-defined]
    return server
