"""A fake OCI registry that serves an image layout and lies in one chosen way. 127.0.0.1 only.

    python hostile_registry.py LAYOUT_DIR PORT --mode MODE [--other-port N] [--log FILE]

Why: a real registry never lies, so gapsync's refusals (wrong digest, missing blob, oversize
blob, redirect to another host) can only be tested against one that does. It answers the read
side of the distribution API: ``GET /v2/``, ``/v2/<name>/manifests/<tag|digest>`` (with
``Content-Type`` = the manifest's media type and ``Docker-Content-Digest``), ``/v2/<name>/blobs/<digest>``
(with ``Range: bytes=N-[M]``), ``/v2/<name>/tags/list``, and ``HEAD`` of all of them.

Names: a tag resolves through the layout's ``index.json``: a descriptor whose
``dev.gapsync.test.repository``/``dev.gapsync.test.tag`` annotations equal (name, tag) — what
``tests/support/oci.build_layout`` writes — or whose ``org.opencontainers.image.ref.name`` equals
the tag (any name). Digests resolve under any name.

MODES — what is tampered with is the TARGET: the *last* layer of every image manifest in the
layout (the shared base layer, first, stays honest). Manifests and configs are always honest:

    honest               everything as stored.
    wrong-digest         TARGET bytes altered (last byte flipped, same length): digest mismatch.
    missing-blob         TARGET answers 404 BLOB_UNKNOWN (GET and HEAD) though manifests reference it.
    oversize             TARGET served with 64 KiB extra bytes appended; Content-Length says so.
    oversize-nolength    the same, but no Content-Length: the body just ends at connection close.
    redirect-other-host  every manifest and blob request answers 307 to
                         http://localhost:OTHER_PORT/<same path> (another host *name*). OTHER_PORT
                         defaults to PORT: this same process then serves the redirected request
                         honestly (it is honest to requests whose Host is ``localhost:…``), so a
                         client that follows the redirect gets valid bytes, and the log shows
                         whether it carried the Authorization header there.

``--log FILE``: one JSON line per request: method, path, host, auth (Authorization present),
status. Stopped by the test with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HONEST = "honest"
WRONG_DIGEST = "wrong-digest"
MISSING_BLOB = "missing-blob"
OVERSIZE = "oversize"
OVERSIZE_NOLENGTH = "oversize-nolength"
REDIRECT_OTHER_HOST = "redirect-other-host"
MODES = (HONEST, WRONG_DIGEST, MISSING_BLOB, OVERSIZE, OVERSIZE_NOLENGTH, REDIRECT_OTHER_HOST)
EXTRA = b"\0hostile-extra" * (65536 // 14) + b"\0" * (65536 % 14)  # 64 KiB appended by oversize modes

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
ROUTE = re.compile(r"^/v2/(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)/(?P<kind>manifests|blobs|tags)/(?P<ref>[^/?]+)$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class Layout:
    """The layout on disk: blobs by digest, tags, and the TARGET layers."""

    def __init__(self, root: Path):
        self.root = root
        self.index = json.loads((root / "index.json").read_text())
        self.targets: set[str] = set()
        for desc in self.index["manifests"]:
            self._walk(desc["digest"])

    def blob(self, digest: str) -> bytes | None:
        if not DIGEST.match(digest):
            return None
        p = self.root / "blobs" / "sha256" / digest.split(":", 1)[1]
        return p.read_bytes() if p.is_file() else None

    def _walk(self, digest: str) -> None:
        data = self.blob(digest)
        if data is None:
            return
        doc = json.loads(data)
        if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
            for child in doc.get("manifests", []):
                self._walk(child["digest"])
        elif doc.get("layers"):
            self.targets.add(doc["layers"][-1]["digest"])

    def resolve_tag(self, name: str, tag: str) -> dict | None:
        for desc in self.index["manifests"]:
            ann = desc.get("annotations", {})
            if ann.get("dev.gapsync.test.repository") == name and ann.get("dev.gapsync.test.tag") == tag:
                return desc
        for desc in self.index["manifests"]:
            if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return desc
        return None

    def tags(self, name: str) -> list[str]:
        return sorted({d["annotations"]["dev.gapsync.test.tag"] for d in self.index["manifests"]
                       if d.get("annotations", {}).get("dev.gapsync.test.repository") == name})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("layout")
    ap.add_argument("port", type=int)
    ap.add_argument("--mode", choices=MODES, default=HONEST)
    ap.add_argument("--other-port", type=int)
    ap.add_argument("--log")
    a = ap.parse_args()
    layout = Layout(Path(a.layout))
    other_port = a.other_port or a.port
    log_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "hostile-registry/1"

        def log_message(self, fmt: str, *args: object) -> None:  # the JSON log below is the record
            pass

        def _record(self, status: int) -> None:
            if a.log:
                with log_lock, open(a.log, "a") as f:
                    f.write(json.dumps({"time": time.time(), "method": self.command, "path": self.path,
                                        "host": self.headers.get("Host"), "auth": "Authorization" in self.headers,
                                        "range": self.headers.get("Range"), "status": status}) + "\n")

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self._record(status)
            self.send_response(status)
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()

        def _body(self, status: int, data: bytes, headers: dict[str, str], *, length: bool = True) -> None:
            if length:
                headers = {**headers, "Content-Length": str(len(data))}
            else:
                self.close_connection = True  # the body ends when the connection does
            self._head(status, headers)
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
            self._body(status, body, {"Content-Type": "application/json"})

        @property
        def mode(self) -> str:
            # Requests that arrive under the other host name are the redirect's target: honest.
            return HONEST if (self.headers.get("Host") or "").startswith("localhost:") else a.mode

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/v2", "/v2/"):
                self._body(200, b"{}", {"Content-Type": "application/json"})
                return
            m = ROUTE.match(path)
            if not m:
                self._error(404, "NOT_FOUND", path)
                return
            name, kind, ref = m["name"], m["kind"], m["ref"]
            if kind == "tags":
                tags = layout.tags(name)
                if ref != "list" or not tags:
                    self._error(404, "NAME_UNKNOWN", name)
                    return
                self._body(200, json.dumps({"name": name, "tags": tags}).encode(), {"Content-Type": "application/json"})
                return
            if self.mode == REDIRECT_OTHER_HOST:
                self._body(307, b"", {"Location": f"http://localhost:{other_port}{self.path}"})
                return
            if kind == "manifests":
                self._manifest(name, ref)
            else:
                self._blob(ref)

        def _manifest(self, name: str, ref: str) -> None:
            digest = ref if DIGEST.match(ref) else (layout.resolve_tag(name, ref) or {}).get("digest")
            data = layout.blob(digest) if digest else None
            if data is None:
                self._error(404, "MANIFEST_UNKNOWN", f"{name}:{ref}")
                return
            media_type = json.loads(data).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
            self._body(200, data, {"Content-Type": media_type, "Docker-Content-Digest": digest})

        def _blob(self, digest: str) -> None:
            data = layout.blob(digest)
            tampered = digest in layout.targets and self.mode != HONEST
            if data is None or (tampered and self.mode == MISSING_BLOB):
                self._error(404, "BLOB_UNKNOWN", digest)
                return
            if tampered and self.mode == WRONG_DIGEST:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            if tampered and self.mode in (OVERSIZE, OVERSIZE_NOLENGTH):
                data = data + EXTRA
            headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                       "Accept-Ranges": "bytes"}
            rng = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
            if rng:
                start = int(rng[1])
                end = min(int(rng[2]), len(data) - 1) if rng[2] else len(data) - 1
                if start >= len(data) or end < start:
                    self._body(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._body(206, data[start:end + 1], headers)
                return
            self._body(200, data, headers, length=not (tampered and self.mode == OVERSIZE_NOLENGTH))

    ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
